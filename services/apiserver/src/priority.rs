//! Which requests the apiserver serves first when it is busy: the ranking
//! behind its in-flight limits (see `moor_rpc::Limits`).
//!
//! As Kubernetes' priority levels, cut down: lease renewals (node
//! heartbeats and leader election), node status and binds are critical, so
//! a flood of lists never makes a healthy node look dead; streams that stay
//! open (watches, the proxy's stream, logs, exec) and administrators hold no
//! seat; everything else is workload, shared fairly between callers.

use moor_rpc::{Caller, Priority};

use crate::certificates::MASTERS;

/// The priority of a call to `path` (`/package.Service/Method`) by `caller`.
pub fn classify(path: &str, caller: Option<&Caller>) -> Priority {
    if caller.is_some_and(|caller| caller.groups.iter().any(|group| group == MASTERS)) {
        return Priority::Exempt;
    }
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return Priority::Workload;
    };
    match (service, method) {
        (_, "Watch")
        | ("moor.proxy.v1.ProxyConfig", "Stream")
        | ("moor.core.v1.Pods", "Logs" | "Exec") => Priority::Exempt,
        (service, _)
            if service.starts_with("grpc.health.") || service.starts_with("grpc.reflection.") =>
        {
            Priority::Exempt
        }
        ("moor.coordination.v1.Leases", _)
        | ("moor.core.v1.Nodes", "UpdateStatus")
        | ("moor.core.v1.Pods", "Bind") => Priority::Critical,
        _ => Priority::Workload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(groups: &[&str]) -> Caller {
        Caller {
            user: "someone".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn ranks_heartbeats_over_lists_and_exempts_streams() {
        let node = caller(&["system:nodes"]);
        assert_eq!(
            classify("/moor.coordination.v1.Leases/Update", Some(&node)),
            Priority::Critical
        );
        assert_eq!(
            classify("/moor.core.v1.Nodes/UpdateStatus", None),
            Priority::Critical
        );
        assert_eq!(
            classify("/moor.core.v1.Pods/Bind", None),
            Priority::Critical
        );
        assert_eq!(
            classify("/moor.core.v1.Pods/List", Some(&node)),
            Priority::Workload
        );
        assert_eq!(
            classify("/moor.core.v1.ConfigMaps/Create", None),
            Priority::Workload
        );
        assert_eq!(classify("/moor.core.v1.Pods/Watch", None), Priority::Exempt);
        assert_eq!(classify("/moor.core.v1.Pods/Exec", None), Priority::Exempt);
        assert_eq!(
            classify("/moor.proxy.v1.ProxyConfig/Stream", None),
            Priority::Exempt
        );
        assert_eq!(
            classify("/grpc.health.v1.Health/Check", None),
            Priority::Exempt
        );
        assert_eq!(
            classify(
                "/moor.core.v1.Pods/List",
                Some(&caller(&["system:masters"]))
            ),
            Priority::Exempt
        );
        assert_eq!(classify("not a path", None), Priority::Workload);
    }
}
