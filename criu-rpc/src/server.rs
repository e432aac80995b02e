//! The request loop: one request per datagram, answered with one reply of the same type (after any
//! notifications), then the server exits unless the client asked to keep the connection open, as CRIU's
//! `swrk` does. A failed request answers `success: false` with `cr_errno` and dormant's message in
//! `cr_errmsg`, logs it as an `Error` line, and makes the process exit non-zero.

use std::io::Write;
use std::sync::Arc;

use crate::error::RpcError;
use crate::proto::{CriuOpts, CriuReq, CriuResp, Features, ReqType, Version};
use crate::session::{CRIU_MAJOR, CRIU_MINOR};
use crate::transport::Conn;

/// Serves the client on inherited socket `fd` until it is done. Returns the process exit status: 0 when
/// every request succeeded (or the client just closed the connection), 1 otherwise.
pub fn serve(fd: i32) -> i32 {
    crate::log::install();
    let conn = match Conn::from_inherited(fd) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            log::error!("{}", e.chain());
            crate::log::configure(None, log::LevelFilter::Error, true);
            return 1;
        }
    };
    loop {
        let req = match conn.recv() {
            Ok(Some(r)) => r,
            Ok(None) => return 0,
            Err(e) => {
                log::error!("{}", e.chain());
                return 1;
            }
        };
        let t = ReqType::try_from(req.r#type).unwrap_or(ReqType::Empty);
        let resp = match handle(&conn, t, &req) {
            Ok(r) => r,
            Err(e) => {
                let msg = e.chain();
                log::error!("{} failed: {msg}", t.name());
                // Clients print where the log is, not cr_errmsg (runc 1.1); at RESTORE our stderr is the
                // one runc was started with, so the reason reaches its user directly too.
                let _ = writeln!(
                    std::io::stderr(),
                    "Error (dormant): {} failed: {msg}",
                    t.name()
                );
                CriuResp::failed(t, e.errno(), msg)
            }
        };
        let ok = resp.success;
        log::logger().flush();
        if let Err(e) = conn.send(&resp) {
            log::error!("sending the {} reply: {}", t.name(), e.chain());
            return 1;
        }
        if !ok {
            return 1;
        }
        if !req.keep_open.unwrap_or(false) {
            return 0;
        }
    }
}

fn handle(conn: &Arc<Conn>, t: ReqType, req: &CriuReq) -> Result<CriuResp, RpcError> {
    match t {
        ReqType::Version => Ok(CriuResp {
            version: Some(version()),
            ..CriuResp::ok(t)
        }),
        ReqType::FeatureCheck => Ok(CriuResp {
            features: Some(features(req.features.unwrap_or_default())),
            ..CriuResp::ok(t)
        }),
        ReqType::Check => check().map(|()| CriuResp::ok(t)),
        ReqType::Dump => crate::dump::serve(conn, opts(req)?),
        ReqType::Restore => crate::restore::serve(conn, opts(req)?),
        ReqType::PreDump | ReqType::SinglePreDump => Err(RpcError::Unsupported(
            "pre-dumps are not implemented in dormant yet (a DUMP alone checkpoints the tree)"
                .into(),
        )),
        other => Err(RpcError::Unsupported(format!(
            "request {} is not served by dormant",
            other.name()
        ))),
    }
}

fn opts(req: &CriuReq) -> Result<&CriuOpts, RpcError> {
    req.opts
        .as_ref()
        .ok_or_else(|| RpcError::Protocol("the request has no options".into()))
}

/// VERSION's answer: CRIU's release number (no gitid: clients then use it as is) and dormant's name.
pub fn version() -> Version {
    Version {
        major_number: CRIU_MAJOR,
        minor_number: CRIU_MINOR,
        name: Some(format!("dormant {}", env!("CARGO_PKG_VERSION"))),
        ..Default::default()
    }
}

/// FEATURE_CHECK's answer: each feature asked about, and whether dormant has it (none of these yet).
fn features(asked: Features) -> Features {
    let no = |f: Option<bool>| f.map(|_| false);
    Features {
        mem_track: no(asked.mem_track),
        lazy_pages: no(asked.lazy_pages),
        pidfd_store: no(asked.pidfd_store),
    }
}

/// CHECK: every kernel feature dormant needs is there.
fn check() -> Result<(), RpcError> {
    let probes = dormant_engine::kerndat::probe_all();
    let missing: Vec<String> = probes
        .iter()
        .filter(|p| p.required && !p.status.is_available())
        .map(|p| format!("{:?} ({})", p.feature, p.kernel_option))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(RpcError::Unsupported(format!(
            "kernel features dormant needs are missing: {}",
            missing.join(", ")
        )))
    }
}
