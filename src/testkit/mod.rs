//! Tools for tests and the benchmark (cargo feature `testkit`), not part of
//! either program: [`delay_proxy`] makes a slow, thin link on loopback.

pub mod delay_proxy;
