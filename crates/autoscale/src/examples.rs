//! The example formulas of the Azure Batch documentation ("Create a formula
//! to automatically scale compute nodes in a Batch pool", its REST
//! reference and its PowerShell reference), verbatim, for tests and the
//! benchmark.

/// "Sample autoscale formulas: Pending tasks".
pub const PENDING_TASKS: &str = "startingNumberOfVMs = 1;
maxNumberofVMs = 25;
pendingTaskSamplePercent = $PendingTasks.GetSamplePercent(180 * TimeInterval_Second);
pendingTaskSamples = pendingTaskSamplePercent < 70 ? startingNumberOfVMs : avg($PendingTasks.GetSample(180 * TimeInterval_Second));
$TargetDedicatedNodes=min(maxNumberofVMs, pendingTaskSamples);
$NodeDeallocationOption = taskcompletion;
";

/// "Sample autoscale formulas: Preempted nodes".
pub const PREEMPTED_NODES: &str = "maxNumberofVMs = 25;
$TargetDedicatedNodes = min(maxNumberofVMs, $PreemptedNodeCount.GetSample(180 * TimeInterval_Second));
$TargetLowPriorityNodes = min(maxNumberofVMs , maxNumberofVMs - $TargetDedicatedNodes);
$NodeDeallocationOption = taskcompletion;
";

/// "Write an autoscale formula": the complete formula (its last statement
/// has no `;`, which ends a formula fine).
pub const CPU_USAGE: &str = "$totalDedicatedNodes =
    (min($CPUPercent.GetSample(TimeInterval_Minute * 10)) > 0.7) ?
    ($CurrentDedicatedNodes * 1.1) : $CurrentDedicatedNodes;
$totalDedicatedNodes =
    (avg($CPUPercent.GetSample(TimeInterval_Minute * 60)) < 0.2) ?
    ($CurrentDedicatedNodes * 0.9) : $totalDedicatedNodes;
$TargetDedicatedNodes = min(400, $totalDedicatedNodes)
";

/// The same formula as a later revision of the page prints it, with a
/// fourth statement after a statement that lacks its `;` (the page warns
/// that "missing semicolons can result in evaluation errors"): a syntax
/// error at line 8, column 1.
pub const CPU_USAGE_MISSING_SEMICOLON: &str = "$totalDedicatedNodes =
    (min($CPUPercent.GetSample(TimeInterval_Minute * 10)) > 0.7) ?
    ($CurrentDedicatedNodes * 1.1) : $CurrentDedicatedNodes;
$totalDedicatedNodes =
    (avg($CPUPercent.GetSample(TimeInterval_Minute * 60)) < 0.2) ?
    ($CurrentDedicatedNodes * 0.9) : $totalDedicatedNodes;
$TargetDedicatedNodes = min(400, $totalDedicatedNodes)
$NodeDeallocationOption = taskcompletion;
";

/// The .NET pool-creation example: 5 nodes on Mondays, 1 otherwise.
pub const MONDAYS: &str = "$TargetDedicatedNodes = (time().weekday == 1 ? 5:1);";

/// "Evaluate an autoscale formula" (and the Python example, with the
/// `$TargetDedicated` alias).
pub const WORKING_HOURS: &str = "
        $curTime = time();
        $workHours = $curTime.hour >= 8 && $curTime.hour < 18;
        $isWeekday = $curTime.weekday >= 1 && $curTime.weekday <= 5;
        $isWorkingWeekdayHour = $workHours && $isWeekday;
        $TargetDedicatedNodes = $isWorkingWeekdayHour ? 20:10;
    ";

/// The Python SDK example.
pub const WORKING_HOURS_ALIAS: &str = "$curTime = time();
             $workHours = $curTime.hour >= 8 && $curTime.hour < 18;
             $isWeekday = $curTime.weekday >= 1 && $curTime.weekday <= 5;
             $isWorkingWeekdayHour = $workHours && $isWeekday;
             $TargetDedicated = $isWorkingWeekdayHour ? 20:10;";

/// "Example 1: Time-based adjustment".
pub const EXAMPLE_1_TIME: &str = "$curTime = time();
$workHours = $curTime.hour >= 8 && $curTime.hour < 18;
$isWeekday = $curTime.weekday >= 1 && $curTime.weekday <= 5;
$isWorkingWeekdayHour = $workHours && $isWeekday;
$TargetDedicatedNodes = $isWorkingWeekdayHour ? 20:10;
$NodeDeallocationOption = taskcompletion;
";

/// "Example 2: Task-based adjustment".
pub const EXAMPLE_2_TASKS: &str = "// Get pending tasks for the past 15 minutes.
$samples = $PendingTasks.GetSamplePercent(TimeInterval_Minute * 15);
// If we have fewer than 70 percent data points, we use the last sample point,
// otherwise we use the maximum of last sample point and the history average.
$tasks = $samples < 70 ? max(0,$PendingTasks.GetSample(1)) : max( $PendingTasks.GetSample(1), avg($PendingTasks.GetSample(TimeInterval_Minute * 15)));
// If number of pending tasks is not 0, set targetVM to pending tasks, otherwise
// half of current dedicated.
$targetVMs = $tasks > 0? $tasks:max(0, $TargetDedicatedNodes/2);
// The pool size is capped at 20, if target VM value is more than that, set it
// to 20. This value should be adjusted according to your use case.
$TargetDedicatedNodes = max(0, min($targetVMs, 20));
// Set node deallocation mode - let running tasks finish before removing a node
$NodeDeallocationOption = taskcompletion;
";

/// "Example 3: Accounting for parallel tasks" (the longest example).
pub const EXAMPLE_3_PARALLEL: &str = "// Determine whether 70 percent of the samples have been recorded in the past
// 15 minutes; if not, use last sample
$samples = $ActiveTasks.GetSamplePercent(TimeInterval_Minute * 15);
$tasks = $samples < 70 ? max(0,$ActiveTasks.GetSample(1)) : max( $ActiveTasks.GetSample(1),avg($ActiveTasks.GetSample(TimeInterval_Minute * 15)));
// Set the number of nodes to add to one-fourth the number of active tasks
// (the TaskSlotsPerNode property on this pool is set to 4, adjust
// this number for your use case)
$cores = $TargetDedicatedNodes * 4;
$extraVMs = (($tasks - $cores) + 3) / 4;
$targetVMs = ($TargetDedicatedNodes + $extraVMs);
// Attempt to grow the number of compute nodes to match the number of active
// tasks, with a maximum of 3
$TargetDedicatedNodes = max(0,min($targetVMs,3));
// Keep the nodes active until the tasks finish
$NodeDeallocationOption = taskcompletion;
";

/// "Example 4: Setting an initial pool size", as the C# `string.Format`
/// produces it: `{0}` is the pool's start time in RFC 1123, `{1}` is 4.
pub fn example_4_initial_size(start_rfc1123: &str) -> String {
    format!(
        "
    $TargetDedicatedNodes = {1};
    lifespan         = time() - time(\"{0}\");
    span             = TimeInterval_Minute * 60;
    startup          = TimeInterval_Minute * 10;
    ratio            = 50;

    $TargetDedicatedNodes = (lifespan > startup ? (max($RunningTasks.GetSample(span, ratio), $ActiveTasks.GetSample(span, ratio)) == 0 ? 0 : $TargetDedicatedNodes) : {1});
    ",
        start_rfc1123, 4
    )
}

/// The REST reference's "Evaluate an automatic scaling formula" request
/// body, which uses the older `$CurrentDedicated` and `$TargetDedicated`.
pub const REST_EVALUATE: &str = "totalNodes=($CPUPercent.GetSamplePercent(TimeInterval_Minute*0,TimeInterval_Minute*10)<0.7?5:(min($CPUPercent.GetSample(TimeInterval_Minute*0, TimeInterval_Minute*10))>0.8?($CurrentDedicated*1.1):$CurrentDedicated));$TargetDedicated=min(100,totalNodes);";

/// "Obtain sample data": a look-back window from 6 to 1 minutes ago.
pub const RUNNING_TASKS_WINDOW: &str = "$runningTasksSample = $RunningTasks.GetSample(1 * TimeInterval_Minute, 6 * TimeInterval_Minute);";

/// The same window, failing unless 75 % of its samples are there.
pub const RUNNING_TASKS_WINDOW_75: &str =
    "$runningTasksSample = $RunningTasks.GetSample(60 * TimeInterval_Second, 120 * TimeInterval_Second, 75);";

/// Every fixed example (Example 4 is a template, see [`example_4_initial_size`]).
pub const ALL: &[(&str, &str)] = &[
    ("pending-tasks", PENDING_TASKS),
    ("preempted-nodes", PREEMPTED_NODES),
    ("cpu-usage", CPU_USAGE),
    ("mondays", MONDAYS),
    ("working-hours", WORKING_HOURS),
    ("working-hours-alias", WORKING_HOURS_ALIAS),
    ("example-1-time", EXAMPLE_1_TIME),
    ("example-2-tasks", EXAMPLE_2_TASKS),
    ("example-3-parallel", EXAMPLE_3_PARALLEL),
    ("rest-evaluate", REST_EVALUATE),
    ("running-tasks-window", RUNNING_TASKS_WINDOW),
    ("running-tasks-window-75", RUNNING_TASKS_WINDOW_75),
];
