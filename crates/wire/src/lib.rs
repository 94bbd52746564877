//! The Azure Batch wire vocabulary: JSON models with their exact names, enum
//! values, date-time and duration formats, OData `$filter`, validation rules
//! and the error-code table. Nothing here does IO.

pub mod enums;
pub mod error;
pub mod lenient;
pub mod models;
pub mod odata;
pub mod time;
pub mod url;
pub mod validate;
pub mod versions;
pub mod workflow;

pub use error::{Error, ErrorCode, Result};
pub use url::encode_segment;
