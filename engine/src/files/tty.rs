//! A shell job's terminal on fds 0-2: not rebuilt but inherited at restore from the restorer's own fds 0-2
//! (`--shell-job`). A session led inside the tree with a controlling terminal is refused by
//! [`crate::tree::check_controlling_terminal`].

/// Whether a character device is a terminal (pty slaves, virtual consoles, serial lines, /dev/tty).
pub fn is_tty_device(rdev: u64) -> bool {
    let major = libc::major(rdev);
    // 136-143: unix98 pty slaves; 4: vt and serial; 5: /dev/tty, console.
    (136..=143).contains(&major) || major == 4 || major == 5
}

/// Whether fd `fd`, a character device `rdev`, is the shell job's terminal, inherited at restore.
pub fn inherited(fd: i32, rdev: u64, shell_job: bool) -> bool {
    shell_job && (0..=2).contains(&fd) && is_tty_device(rdev)
}
