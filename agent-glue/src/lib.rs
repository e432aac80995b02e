//! dormant-agent-glue: what kata-agent links to checkpoint and restore whole containers.
//!
//! It will hold container-level operations on top of `dormant-engine` and `dormant-restorer`: the Kata
//! guest paths and mount policy (which mounts are external, where their masters live), the cgroup freezer,
//! and the RPC surface kata-agent exposes. It does not touch processes itself and never prints or exits.
//!
//! Nothing lives here yet: the container issues add it. The crate exists now so the dependency direction
//! (cli → agent-glue → {engine, restorer}) is fixed from the start.
