//! Names several components must agree on: annotations, labels, finalizers
//! and the objects through which components find each other.

/// Finalizer of an owner deleted with propagationPolicy Orphan: the garbage
/// collector removes it once the dependents no longer point at the owner.
pub const FINALIZER_ORPHAN: &str = "orphan";

/// Finalizer of an owner deleted with propagationPolicy Foreground: the
/// garbage collector removes it once no blocking dependent is left.
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// Annotation of a static pod's mirror: the hash of its manifest.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Label tying a replica set and its pods to one deployment template.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// Annotation with a deployment's (and its replica sets') revision.
pub const DEPLOYMENT_REVISION: &str = "deployment.kubernetes.io/revision";

/// Namespace and name of the Secret holding the token node agents accept
/// (from the apiserver only), and its key.
pub const NODE_AGENT_TOKEN: (&str, &str, &str) = ("moor-system", "node-agent-token", "token");

/// Namespace and name of the headless Service and Endpoints naming the
/// active scheduler's plan service.
pub const SCHEDULER_ENDPOINTS: (&str, &str) = ("moor-system", "moor-scheduler");

/// Join tokens, kept as Secrets (Kubernetes keeps its bootstrap tokens as
/// Secrets in `kube-system`): `moor token create` writes them, the
/// apiserver checks bearer tokens against them.
pub mod join_token {
    /// The namespace of the Secrets.
    pub const NAMESPACE: &str = "moor-system";
    /// Prefix of a Secret's name; the token's id follows.
    pub const SECRET_PREFIX: &str = "bootstrap-token-";
    /// The Secrets' type.
    pub const SECRET_TYPE: &str = "moor.io/bootstrap-token";
    /// Key of the SHA-256 of the token's secret (never the secret itself).
    pub const HASH_KEY: &str = "token-secret-sha256";
    /// Key of the expiry, seconds since the Unix epoch; absent: none.
    pub const EXPIRATION_KEY: &str = "expiration";
    /// Key of the description.
    pub const DESCRIPTION_KEY: &str = "description";
    /// Key of the user a token authenticates as; absent: a join token
    /// (`system:bootstrap:<id>`, which may only join a node).
    pub const USER_KEY: &str = "user";
    /// Key of that user's groups, comma-separated.
    pub const GROUPS_KEY: &str = "groups";
    /// Key of what a join token is for: absent for a node, or
    /// [`USAGE_CONTROL_PLANE`].
    pub const USAGE_KEY: &str = "usage";
    /// A token that joins a server to the control plane: its holder gets
    /// the cluster's CA keys (`moor join --control-plane`).
    pub const USAGE_CONTROL_PLANE: &str = "control-plane";
}

/// The user of the apiserver's client certificate towards node agents: the
/// only caller an agent serving TLS accepts.
pub const APISERVER_USER: &str = "system:apiserver";

/// Where the apiservers of a cluster publish themselves, so that a client
/// given one of them learns the others (Kubernetes' `default/kubernetes`
/// Endpoints): each apiserver renews a Lease of its own, and the Endpoints
/// list the addresses of those whose Lease is live.
pub mod apiservers {
    /// The Endpoints' namespace.
    pub const ENDPOINTS_NAMESPACE: &str = "default";
    /// The Endpoints' name.
    pub const ENDPOINTS_NAME: &str = "kubernetes";
    /// The namespace of the apiservers' Leases.
    pub const LEASE_NAMESPACE: &str = "moor-system";
    /// Prefix of an apiserver's Lease name.
    pub const LEASE_PREFIX: &str = "apiserver-";
    /// The label every apiserver's Lease carries (value "true").
    pub const LEASE_LABEL: &str = "moor.io/apiserver";
    /// The label on the Endpoints naming their writer, so that the
    /// endpoints controller leaves them alone though no Service selects
    /// pods for them.
    pub const MANAGED_BY_LABEL: &str = "endpoints.moor.io/managed-by";
    /// Its value: the apiservers.
    pub const MANAGED_BY: &str = "moor-apiserver";
}
