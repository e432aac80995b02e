//! dormant-tests: self-verifying workloads and the privileged end-to-end test harness.
