//! What to compute and how: op descriptors, kernel and tile configurations, and the
//! autotuning cache's keys and entries. Everything here is plain data (no device, no
//! buffers), so that the plan's choices and the references can be built and tested on
//! any machine. The ops re-export the descriptors they take (for example
//! [`crate::ops::gemm::GemmDesc`] is [`gemm::GemmDesc`]).

pub mod conv;
pub mod eltwise;
pub mod gemm;
pub mod image;
pub mod layout;
pub mod pool;
pub mod qgemm;
pub mod rows;
pub mod tuning;
pub mod wgemm;
