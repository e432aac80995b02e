//! The ttrpc service generated from `proto/checkpoint.proto` (package `dormant.agent.v1`, service
//! `ContainerCheckpoint`): the messages ([`checkpoint`]) and the async server trait with its
//! `create_container_checkpoint` registration map ([`checkpoint_ttrpc`]). The generated handlers refer to
//! `super::checkpoint`, so both modules are siblings here, as in kata's protocols crate.

#[allow(
    warnings,
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations,
    unused_qualifications,
    unsafe_code
)]
pub mod checkpoint {
    include!(concat!(env!("OUT_DIR"), "/checkpoint.rs"));
}

#[allow(
    warnings,
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations,
    unused_qualifications,
    unsafe_code
)]
pub mod checkpoint_ttrpc {
    include!(concat!(env!("OUT_DIR"), "/checkpoint_ttrpc.rs"));
}
