//! RESTORE: CRIU's restore options onto [`dormant_restorer::Restore`], in this very process (the
//! restored root is forked from here, as CRIU does, and becomes the client's child with `rst_sibling`),
//! with the notify callbacks in CRIU's order: pre-restore before anything, then with every task restored
//! and still stopped setup-namespaces (root pid), post-setup-namespaces, post-restore (root pid),
//! network-unlock, pre-resume; post-resume once the tree runs.
//!
//! The container's tasks keep their pids inside its pid namespace; their host pids are the kernel's
//! choice, as with CRIU (the dumped container may still run, after a leave-running dump). A failed restore
//! leaves no restored process behind (the restorer kills what it forked).

use std::path::PathBuf;
use std::sync::Arc;

use dormant_restorer::ns::{CgroupTarget, NetMode};
use dormant_restorer::{ReleaseHook, Restore, RootParent};

use crate::error::RpcError;
use crate::opts::{setup, NetChoice, RestorePlan};
use crate::proto::{CriuOpts, CriuResp, ReqType, RestoreResp};
use crate::session::{read_config_file, Dirs, Notifier};
use crate::transport::Conn;

pub fn serve(conn: &Arc<Conn>, o: &CriuOpts) -> Result<CriuResp, RpcError> {
    let mut dirs = Dirs::open(conn, &setup(o)?)?;
    let mut plan = RestorePlan::from_opts(o)?;
    let cfg = read_config_file(o)?;
    plan.tcp_established |= cfg.tcp_established;
    plan.shell_job |= cfg.shell_job;
    log::info!("RESTORE: {plan:?}");
    let notifier = Notifier::new(conn, plan.common.notify);
    notifier.notify("pre-restore", None)?;
    crate::cgroup::join(&plan.cgroups)?;
    let net = match &plan.net {
        NetChoice::AsDumped => NetMode::AsDumped,
        NetChoice::Join(p) => NetMode::External(p.clone()),
        NetChoice::JoinFd { fd, key } => {
            log::info!("{key}: the network namespace to join is our fd {fd}");
            NetMode::External(PathBuf::from(format!("/proc/self/fd/{fd}")))
        }
    };
    let hook_notifier = notifier.clone();
    let before_resume = move |pid: u32| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        for (script, with_pid) in [
            ("setup-namespaces", true),
            ("post-setup-namespaces", false),
            ("post-restore", true),
            ("network-unlock", false),
            ("pre-resume", false),
        ] {
            hook_notifier.notify(script, with_pid.then_some(pid))?;
        }
        Ok(())
    };
    let started = std::time::Instant::now();
    let restored = Restore::builder(dirs.image_path())
        .root(plan.root.clone())
        .externals(plan.externals.clone())
        .net(net)
        // Joined above: the tree inherits this process's cgroups.
        .cgroup_root(CgroupTarget::Keep)
        .detached(true)
        .shell_job(plan.shell_job)
        .tcp_established(plan.tcp_established)
        .inherit_fds(plan.inherit_fds.clone())
        .root_parent(if plan.sibling {
            RootParent::RestorersParent
        } else {
            RootParent::Restorer
        })
        .fresh_host_pids(true)
        .before_release(ReleaseHook(Arc::new(before_resume)))
        .build()?
        .run()?;
    let pid = restored.pid();
    log::info!(
        "restored in {} ms; the tree's root is pid {pid}",
        started.elapsed().as_millis()
    );
    let stats = crate::stats::StatsEntry {
        dump: None,
        restore: Some(crate::stats::RestoreStatsEntry {
            pages_compared: 0,
            pages_skipped_cow: 0,
            // The tree is forked inside the restore; its share is not measured apart.
            forking_time: 0,
            restore_time: crate::stats::us(started.elapsed()),
            pages_restored: None,
        }),
    };
    crate::stats::write(dirs.work(), "stats-restore", &stats);
    notifier.notify("post-resume", None)?;
    dirs.status_ready()?;
    Ok(CriuResp {
        restore: Some(RestoreResp {
            pid: i32::try_from(pid).unwrap_or(-1),
        }),
        ..CriuResp::ok(ReqType::Restore)
    })
}
