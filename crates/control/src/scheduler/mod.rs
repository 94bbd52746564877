//! The scheduler: the round (`round`), node queues (`queues`), ready tasks read
//! ahead (`readahead`), the attempt writes (`attempts`) and placement (pure).

pub(crate) mod attempts;
pub mod placement;
pub(crate) mod queues;
pub(crate) mod readahead;
pub(crate) mod round;

pub use round::job_order;
