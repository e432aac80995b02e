//! The dumping terminal (`--shell-job`): fds that referred to the terminal the dumped shell job ran on
//! become copies of the restorer's own fds 0-2, the terminal it runs on now.

use std::os::fd::BorrowedFd;

/// The restorer's fd standing in for the task's terminal fd `fd` (the same of 0-2, else stderr's).
pub fn ours(fd: i32) -> BorrowedFd<'static> {
    // SAFETY: fds 0-2 of this process stay open for its lifetime; the borrow is only used to duplicate.
    unsafe { BorrowedFd::borrow_raw(fd.clamp(0, 2)) }
}
