//! DUMP: CRIU's dump options onto [`dormant_engine::Dump`], with the notify callbacks at CRIU's points:
//! pre-dump (before anything is touched), network-lock (the tree is frozen), post-dump (the image is
//! committed, the tree still frozen), network-unlock (after a leave-running dump, the tree runs again).
//!
//! A dump that fails leaves the tree running as it was (the engine detaches it; a freezer cgroup found
//! frozen is frozen again) and no image behind.

use std::sync::Arc;

use dormant_engine::freezer::{CgroupFreezer, ThawGuard};
use dormant_engine::{Dump, DumpEvent};
use dormant_image::records::{FileCheck, Pid};

use crate::error::RpcError;
use crate::opts::{setup, DumpPlan};
use crate::proto::{CriuOpts, CriuResp, DumpResp, ReqType};
use crate::session::{mark_complete, read_config_file, Dirs, Notifier};
use crate::transport::Conn;

pub fn serve(conn: &Arc<Conn>, o: &CriuOpts) -> Result<CriuResp, RpcError> {
    let mut dirs = Dirs::open(conn, &setup(o)?)?;
    let mut plan = DumpPlan::from_opts(o)?;
    let cfg = read_config_file(o)?;
    plan.tcp_established |= cfg.tcp_established;
    plan.shell_job |= cfg.shell_job;
    log::info!("DUMP of pid {}: {plan:?}", plan.pid);
    let notifier = Notifier::new(conn, plan.common.notify);
    notifier.notify("pre-dump", None)?;
    let hook_notifier = notifier.clone();
    let images = dirs.images_path();
    let hook = Box::new(move |event: DumpEvent| {
        let done = match event {
            DumpEvent::Frozen { .. } => hook_notifier.notify("network-lock", None),
            // Before the tree is killed: a failure here leaves it running.
            DumpEvent::Committed { .. } => {
                mark_complete(&images).and_then(|()| hook_notifier.notify("post-dump", None))
            }
        };
        done.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    });
    let mut dump = Dump::builder(Pid(plan.pid));
    if let Some(dir) = &plan.freeze_cgroup {
        let cgroup_err = |what: String| RpcError::Cgroup {
            path: dir.clone(),
            what,
        };
        let freezer = CgroupFreezer::find(std::slice::from_ref(dir))
            .map_err(|e| cgroup_err(e.to_string()))?
            .ok_or_else(|| {
                cgroup_err(
                    "freeze_cgroup has neither freezer.state (v1) nor cgroup.freeze (v2)".into(),
                )
            })?;
        // Frozen now if it was not (the runtime may have paused it); thawed once the tree is seized, frozen
        // again before it is let go if it was paused.
        let guard = ThawGuard::freeze(freezer).map_err(|e| cgroup_err(format!("freezing: {e}")))?;
        log::info!(
            "freeze_cgroup {}: {}",
            dir.display(),
            if guard.was_paused() {
                "found frozen (the runtime paused it)"
            } else {
                "frozen for the seize"
            }
        );
        dump = dump.freezer(Box::new(guard));
    }
    let stats = dump
        .images_dir(dirs.image_path())
        .externals(plan.externals.clone())
        .root(plan.root.clone())
        .leave_running(plan.leave_running)
        .shell_job(plan.shell_job)
        .tcp_established(plan.tcp_established)
        // Files behind mappings are found again by content (build-id or crc32), as CRIU's default
        // file_validation_method: a runtime restores onto another instance of the same image (a new
        // overlay mount) whose device numbers differ.
        .file_check(FileCheck::Content)
        // The runtime reaps its container's processes itself (and may be waiting for our exit first).
        .wait_reaped(false)
        .on_event(hook)
        .build()?
        .run()?;
    let msg = format!(
        "pid {}: dumped {} MiB in {} ms (frozen {} ms)",
        plan.pid,
        stats.bytes_written >> 20,
        stats.total.as_millis(),
        stats.frozen.as_millis()
    );
    if plan.common.display_stats {
        log::warn!("{msg}");
    } else {
        log::info!("{msg}");
    }
    crate::stats::write(dirs.work(), "stats-dump", &crate::stats::of_dump(&stats));
    if plan.leave_running {
        notifier.notify("network-unlock", None)?;
    }
    dirs.status_ready()?;
    Ok(CriuResp {
        dump: Some(DumpResp {
            restored: Some(false),
        }),
        ..CriuResp::ok(ReqType::Dump)
    })
}
