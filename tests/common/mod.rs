//! Shared test harness: real processes and real peers on 127.0.0.1, ports picked at run time.
#![allow(dead_code)]

pub mod dev;
pub mod pg;
