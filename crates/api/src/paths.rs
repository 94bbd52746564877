//! The paths of resources in links (`url`, `Location`, `DataServiceId`).

use wire::encode_segment;

pub fn job_path(id: &str) -> String {
    format!("/jobs/{}", encode_segment(id))
}

pub fn task_path(job: &str, task: &str) -> String {
    format!("{}/tasks/{}", job_path(job), encode_segment(task))
}

pub fn pool_path(id: &str) -> String {
    format!("/pools/{}", encode_segment(id))
}

pub fn schedule_path(id: &str) -> String {
    format!("/jobschedules/{}", encode_segment(id))
}
