//! What a pod requests and a node offers, in exact integer units.

use std::collections::HashMap;
use std::ops::{Add, Sub};

use moor_api::core::v1::{Container, Node, PodSpec};

/// CPU assumed for scoring a container that requests none (as Kubernetes).
pub const DEFAULT_MILLI_CPU: i128 = 100;
/// Memory assumed for scoring a container that requests none: 200Mi, in
/// milli-bytes.
pub const DEFAULT_MEMORY: i128 = 200 * 1024 * 1024 * 1000;

/// An amount of the resources the scheduler accounts for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in millicores.
    pub milli_cpu: i128,
    /// Memory in thousandths of a byte (as `moor_quantity::parse` gives it).
    pub memory: i128,
    /// Number of pods.
    pub pods: i128,
}

// === impl Resources ===

impl Resources {
    /// CPU and memory from a requests, capacity or allocatable map; unknown
    /// or unparsable entries count as zero.
    pub fn from_map(map: &HashMap<String, String>) -> Self {
        let get = |k: &str| {
            map.get(k)
                .and_then(|v| moor_quantity::parse(v))
                .unwrap_or(0)
        };
        Self {
            milli_cpu: get("cpu"),
            memory: get("memory"),
            pods: get("pods") / 1000,
        }
    }

    /// What a node offers: allocatable, falling back to capacity.
    pub fn allocatable(node: &Node) -> Self {
        let status = node.status.clone().unwrap_or_default();
        if status.allocatable.is_empty() {
            Self::from_map(&status.capacity)
        } else {
            Self::from_map(&status.allocatable)
        }
    }

    /// The larger of each resource.
    pub fn max(self, other: Self) -> Self {
        Self {
            milli_cpu: self.milli_cpu.max(other.milli_cpu),
            memory: self.memory.max(other.memory),
            pods: self.pods.max(other.pods),
        }
    }
}

// Saturating: requests are clients' numbers, each up to i128::MAX
// thousandths; a sum past the range is "more than any node has", not a
// panic in the scheduler.
impl Add for Resources {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            milli_cpu: self.milli_cpu.saturating_add(o.milli_cpu),
            memory: self.memory.saturating_add(o.memory),
            pods: self.pods.saturating_add(o.pods),
        }
    }
}

impl Sub for Resources {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self {
            milli_cpu: self.milli_cpu.saturating_sub(o.milli_cpu),
            memory: self.memory.saturating_sub(o.memory),
            pods: self.pods.saturating_sub(o.pods),
        }
    }
}

/// What a pod requests: the sum over its containers, or the largest init
/// container where that is more (init containers run one at a time, before
/// the others); one pod.
pub fn pod_requests(spec: &PodSpec) -> Resources {
    requests_with(spec, |c| container_requests(c, false))
}

/// Like [`pod_requests`], but a container without a CPU or memory request
/// counts the defaults, so that scoring spreads pods that request nothing.
pub fn nonzero_requests(spec: &PodSpec) -> Resources {
    requests_with(spec, |c| container_requests(c, true))
}

fn requests_with(spec: &PodSpec, per: impl Fn(&Container) -> Resources) -> Resources {
    let sum = spec
        .containers
        .iter()
        .map(&per)
        .fold(Resources::default(), Add::add);
    let init = spec
        .init_containers
        .iter()
        .map(&per)
        .fold(Resources::default(), Resources::max);
    Resources {
        pods: 1,
        ..sum.max(init)
    }
}

fn container_requests(container: &Container, nonzero: bool) -> Resources {
    let requests = container
        .resources
        .as_ref()
        .map(|r| Resources::from_map(&r.requests))
        .unwrap_or_default();
    if nonzero {
        Resources {
            milli_cpu: if requests.milli_cpu == 0 {
                DEFAULT_MILLI_CPU
            } else {
                requests.milli_cpu
            },
            memory: if requests.memory == 0 {
                DEFAULT_MEMORY
            } else {
                requests.memory
            },
            pods: 0,
        }
    } else {
        Resources {
            pods: 0,
            ..requests
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use moor_api::core::v1::ResourceRequirements;

    use super::*;

    pub(crate) fn container(cpu: &str, memory: &str) -> Container {
        let mut requests = HashMap::new();
        if !cpu.is_empty() {
            requests.insert("cpu".to_string(), cpu.to_string());
        }
        if !memory.is_empty() {
            requests.insert("memory".to_string(), memory.to_string());
        }
        Container {
            name: "c".to_string(),
            resources: Some(ResourceRequirements {
                requests,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn requests_past_the_range_saturate_instead_of_panicking() {
        // Each parses (up to i128::MAX thousandths); their sum did overflow.
        let huge = format!("{}m", i128::MAX);
        let spec = PodSpec {
            containers: vec![container(&huge, ""), container(&huge, "")],
            ..Default::default()
        };
        assert_eq!(pod_requests(&spec).milli_cpu, i128::MAX);
    }

    #[test]
    fn sums_containers_and_takes_the_largest_init_container() {
        let spec = PodSpec {
            containers: vec![container("500m", "1Mi"), container("250m", "")],
            init_containers: vec![container("600m", ""), container("100m", "4Mi")],
            ..Default::default()
        };
        let r = pod_requests(&spec);
        assert_eq!(r.milli_cpu, 750);
        assert_eq!(r.memory, 4 * 1024 * 1024 * 1000);
        assert_eq!(r.pods, 1);
    }

    #[test]
    fn nonzero_fills_defaults_per_container() {
        let spec = PodSpec {
            containers: vec![container("", ""), container("1", "")],
            ..Default::default()
        };
        let r = nonzero_requests(&spec);
        assert_eq!(r.milli_cpu, DEFAULT_MILLI_CPU + 1000);
        assert_eq!(r.memory, 2 * DEFAULT_MEMORY);
    }

    #[test]
    fn pods_count_is_whole() {
        let map = HashMap::from([("pods".to_string(), "110".to_string())]);
        assert_eq!(Resources::from_map(&map).pods, 110);
    }
}
