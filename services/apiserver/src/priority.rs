//! Which requests the apiserver serves first when it is busy: the ranking
//! behind its in-flight limits (see `moor_rpc::Limits`).
//!
//! As Kubernetes' priority levels, cut down: lease renewals (node
//! heartbeats and leader election), node status and binds are critical, so
//! a flood of lists never makes a healthy node look dead; streams that stay
//! open (watches, the proxy's stream, logs, exec) and administrators hold no
//! seat; everything else is workload, shared fairly between callers.

//!
//! A list holds one workload seat per [`OBJECTS_PER_SEAT`] objects of its
//! kind (at most [`MAX_LIST_SEATS`]), as Kubernetes' priority and fairness
//! weighs one: a flood of lists of thousands of objects takes the seats of
//! as many single-object requests as it costs, not one each.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use moor_rpc::{Caller, Priority};

use crate::certificates::MASTERS;

/// Objects of a kind a list may return per seat it holds (Kubernetes'
/// figure).
pub const OBJECTS_PER_SEAT: usize = 100;
/// The most seats one list holds (Kubernetes' figure).
pub const MAX_LIST_SEATS: usize = 10;

/// How many objects of a kind there are now.
pub type Count = Arc<dyn Fn() -> usize + Send + Sync>;

/// Ranks requests, knowing how many objects each kind's list may return.
#[derive(Default)]
pub struct Ranking {
    /// Each service's (`moor.core.v1.Pods`) count of objects.
    counts: RwLock<HashMap<&'static str, Count>>,
}

impl Ranking {
    /// Lists of `service` cost by `count`.
    pub fn count(&self, service: &'static str, count: Count) {
        self.counts
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(service, count);
    }

    /// The priority of a call to `path` (`/package.Service/Method`) by
    /// `caller`.
    pub fn classify(&self, path: &str, caller: Option<&Caller>) -> Priority {
        match classify(path, caller) {
            Priority::Workload(_) => Priority::Workload(self.seats(path)),
            other => other,
        }
    }

    /// The seats a workload call to `path` holds.
    fn seats(&self, path: &str) -> usize {
        let Some((service, "List")) = path.trim_start_matches('/').split_once('/') else {
            return 1;
        };
        let objects = self
            .counts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(service)
            .map_or(0, |count| count());
        objects.div_ceil(OBJECTS_PER_SEAT).clamp(1, MAX_LIST_SEATS)
    }
}

/// The priority of a call to `path` (`/package.Service/Method`) by
/// `caller`, every workload call at one seat.
fn classify(path: &str, caller: Option<&Caller>) -> Priority {
    if caller.is_some_and(|caller| caller.groups.iter().any(|group| group == MASTERS)) {
        return Priority::Exempt;
    }
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return Priority::Workload(1);
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
        _ => Priority::Workload(1),
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
            Priority::Workload(1)
        );
        assert_eq!(
            classify("/moor.core.v1.ConfigMaps/Create", None),
            Priority::Workload(1)
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
        assert_eq!(classify("not a path", None), Priority::Workload(1));
    }

    #[test]
    fn a_list_weighs_what_it_may_return() {
        let ranking = Ranking::default();
        let pods = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = pods.clone();
        ranking.count(
            "moor.core.v1.Pods",
            Arc::new(move || counted.load(std::sync::atomic::Ordering::Relaxed)),
        );
        let list = |n: usize| {
            pods.store(n, std::sync::atomic::Ordering::Relaxed);
            ranking.classify("/moor.core.v1.Pods/List", None)
        };
        assert_eq!(list(0), Priority::Workload(1));
        assert_eq!(list(100), Priority::Workload(1));
        assert_eq!(list(101), Priority::Workload(2));
        assert_eq!(list(350), Priority::Workload(4));
        assert_eq!(list(50_000), Priority::Workload(MAX_LIST_SEATS));
        // Only lists weigh; other kinds' lists and other calls take one.
        assert_eq!(
            ranking.classify("/moor.core.v1.Pods/Create", None),
            Priority::Workload(1)
        );
        assert_eq!(
            ranking.classify("/moor.core.v1.ConfigMaps/List", None),
            Priority::Workload(1)
        );
        assert_eq!(
            ranking.classify("/moor.core.v1.Pods/Bind", None),
            Priority::Critical
        );
    }
}
