//! End-to-end: descriptor state at the edges of the fd table (issue 13) that dumps used to refuse, each
//! restored exactly by a real `dormant dump` + `dormant restore` of `wl_fdedges`: an epoll watching fd
//! numbers the task closed or reused (and another epoll); an inotify watching an unlinked file and a memfd. Privileged (root); needs the dormant binary.

use dormant_tests::harness::{self, Result, Spec};

fn edges(kinds: &[&str]) -> Spec {
    Spec::workload("wl_fdedges", env!("CARGO_BIN_EXE_wl_fdedges")).args(kinds.iter().copied())
}

#[test]
fn epoll_watching_closed_and_reused_numbers_and_an_epoll() -> Result<()> {
    let log = harness::dump_restore(edges(&["epoll"]))?;
    assert!(log.contains("ok epoll"), "{log}");
    Ok(())
}

#[test]
fn inotify_watching_an_unlinked_file_and_a_memfd() -> Result<()> {
    let log = harness::dump_restore(edges(&["inotify"]))?;
    assert!(log.contains("ok inotify"), "{log}");
    Ok(())
}

#[test]
fn posix_ofd_and_flock_locks_on_the_right_descriptions() -> Result<()> {
    let log = harness::dump_restore(edges(&["locks"]))?;
    assert!(log.contains("ok locks"), "{log}");
    Ok(())
}

#[test]
fn read_and_write_leases() -> Result<()> {
    let log = harness::dump_restore(edges(&["leases"]))?;
    assert!(log.contains("ok leases"), "{log}");
    Ok(())
}
