//! Node certificates and the tokens that let a new machine ask for one.
//!
//! A token (`moor token create`) is a Secret in `moor-system` named
//! `bootstrap-token-<id>` holding the SHA-256 of the token's secret and its
//! expiry, as Kubernetes' bootstrap tokens are Secrets in `kube-system`. A
//! join token's holder is authenticated as `system:bootstrap:<id>` in
//! `system:bootstrappers`, a group that may ask for a node certificate and
//! nothing else; a user token (`--user`) names its user and groups. `SignNode` signs a node's request with the cluster CA: for
//! a token's holder only under a name no node has yet, for a node only its
//! own name (a renewal), for an administrator any. `JoinServer` hands a
//! control-plane token's holder (`usage: control-plane` in its Secret,
//! group `system:bootstrappers:control-plane`) or an administrator the
//! cluster's CA keys and where etcd is, from a server that runs an etcd
//! member of its own.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use moor_api::authentication::v1::certificates_server::Certificates;
use moor_api::authentication::v1::{
    JoinServerRequest, JoinServerResponse, RemoveServerRequest, RemoveServerResponse,
    SignNodeRequest, SignNodeResponse,
};
use moor_api::core::v1::{Node, Secret};
use moor_api::well_known::join_token;
use moor_rpc::{Caller, TokenFuture};
use tonic::{Request, Response, Status};

use crate::registry::Registry;

/// The group of a join token's holder.
const BOOTSTRAPPERS: &str = "system:bootstrappers";
/// The group of a control-plane join token's holder, who may also fetch
/// the cluster's keys to run a server (`JoinServer`).
const SERVER_BOOTSTRAPPERS: &str = "system:bootstrappers:control-plane";
/// What a control-plane join token's holder may call besides.
const JOIN_SERVER: &str = "/moor.authentication.v1.Certificates/JoinServer";
/// The group of administrators.
pub(crate) const MASTERS: &str = "system:masters";
/// On a Node a join created: the token's user that claimed the name.
const JOINED_BY_ANNOTATION: &str = "moor.io/joined-by";
/// The only methods a join token's holder may call.
const BOOTSTRAP_METHODS: &[&str] = &[
    "/moor.authentication.v1.Certificates/SignNode",
    "/moor.authentication.v1.Authentication/WhoAmI",
];

/// Who gets in and to which methods: join tokens checked against their
/// Secrets, bootstrappers and nodes kept to their methods.
pub(crate) struct Access {
    secrets: Arc<Registry<Secret>>,
}

impl Access {
    pub(crate) fn new(secrets: Arc<Registry<Secret>>) -> Self {
        Self { secrets }
    }

    /// The caller a token stands for, if it is known and not expired. Read
    /// from the store, not the watch cache: a token works the moment its
    /// create returns, and stops the moment its delete does.
    async fn check(secrets: Arc<Registry<Secret>>, text: String) -> Option<Caller> {
        let token = moor_pki::Token::parse(&text).ok()?;
        let name = format!("{}{}", join_token::SECRET_PREFIX, token.id());
        let request = moor_api::meta::v1::GetRequest {
            namespace: join_token::NAMESPACE.to_string(),
            name,
        };
        let secret = secrets.get(&request).await.ok()?;
        caller_of(&secret, &token)
    }
}

/// The caller `token` stands for by its Secret, if the secret matches and
/// has not expired.
fn caller_of(secret: &Secret, token: &moor_pki::Token) -> Option<Caller> {
    if secret.r#type != join_token::SECRET_TYPE {
        return None;
    }
    let hash = std::str::from_utf8(secret.data.get(join_token::HASH_KEY)?).ok()?;
    if !moor_pki::Token::verify_secret(token.secret(), hash) {
        return None;
    }
    if let Some(expiration) = secret.data.get(join_token::EXPIRATION_KEY) {
        let at: u64 = std::str::from_utf8(expiration).ok()?.trim().parse().ok()?;
        if UNIX_EPOCH + Duration::from_secs(at) <= SystemTime::now() {
            return None;
        }
    }
    let text = |key: &str| {
        secret
            .data
            .get(key)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_string)
    };
    Some(match text(join_token::USER_KEY) {
        // A token for a user (scripts, other languages' clients).
        Some(user) => Caller {
            user,
            groups: text(join_token::GROUPS_KEY)
                .unwrap_or_default()
                .split(',')
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect(),
        },
        None => {
            let mut groups = vec![BOOTSTRAPPERS.to_string()];
            if text(join_token::USAGE_KEY).as_deref() == Some(join_token::USAGE_CONTROL_PLANE) {
                groups.push(SERVER_BOOTSTRAPPERS.to_string());
            }
            Caller {
                user: format!("system:bootstrap:{}", token.id()),
                groups,
            }
        }
    })
}

impl moor_rpc::Authenticator for Access {
    fn token(&self, token: &str) -> TokenFuture {
        Box::pin(Self::check(self.secrets.clone(), token.to_string()).map(Ok))
    }

    fn authorize(&self, caller: &Caller, path: &str) -> Result<(), Status> {
        let in_group = |group: &str| caller.groups.iter().any(|g| g == group);
        let server_join = path == JOIN_SERVER && in_group(SERVER_BOOTSTRAPPERS);
        if path == JOIN_SERVER && in_group(BOOTSTRAPPERS) && !server_join {
            return Err(Status::permission_denied(format!(
                "{} holds a node's join token: joining the control plane takes a token from \
                 `moor token create --control-plane`",
                caller.user
            )));
        }
        if in_group(BOOTSTRAPPERS) && !BOOTSTRAP_METHODS.contains(&path) && !server_join {
            return Err(Status::permission_denied(format!(
                "{} (a join token) may only ask for a node certificate, not call {path}",
                caller.user
            )));
        }
        if let Some(node) = crate::node_access::node_of(Some(caller))
            && !crate::node_access::method_allowed(path)
        {
            return Err(crate::node_access::denied(
                node,
                format_args!("call {path}"),
            ));
        }
        Ok(())
    }
}

/// Signs node certificates with the cluster CA.
pub(crate) struct NodeSigner {
    /// The CA and how long the certificates it signs are valid.
    signer: Option<(Arc<moor_pki::Ca>, Duration)>,
    /// What a joining server is handed, if this one runs an etcd member.
    control_plane: Option<crate::ControlPlane>,
    /// etcd's membership, with the control plane.
    members: Option<moor_storage_etcd::Members>,
    nodes: Arc<Registry<Node>>,
}

impl NodeSigner {
    pub(crate) fn new(
        signer: Option<(Arc<moor_pki::Ca>, Duration)>,
        control_plane: Option<crate::ControlPlane>,
        members: Option<moor_storage_etcd::Members>,
        nodes: Arc<Registry<Node>>,
    ) -> Self {
        Self {
            signer,
            control_plane,
            members,
            nodes,
        }
    }
}

#[tonic::async_trait]
impl Certificates for NodeSigner {
    async fn sign_node(
        &self,
        request: Request<SignNodeRequest>,
    ) -> Result<Response<SignNodeResponse>, Status> {
        let caller = moor_rpc::caller(&request).ok_or_else(|| {
            Status::failed_precondition(
                "this apiserver serves plain text (--insecure): it issues no certificates",
            )
        })?;
        let (ca, validity) = self.signer.as_ref().ok_or_else(|| {
            Status::failed_precondition("this apiserver holds no CA key to sign with")
        })?;
        let SignNodeRequest { node_name, csr_pem } = request.into_inner();
        moor_labels::validation::dns1123_subdomain(&node_name).map_err(|why| {
            Status::invalid_argument(format!("node_name: Invalid value: {node_name:?}: {why}"))
        })?;
        let user = format!("system:node:{node_name}");
        let in_group = |group: &str| caller.groups.iter().any(|g| g == group);
        if in_group(MASTERS) || caller.user == user {
            // An administrator, or the node renewing its own certificate.
        } else if in_group(BOOTSTRAPPERS) {
            // The name is claimed by creating its Node: of two machines
            // joining under one name at once, one create fails.
            let mut claim = Node::default();
            let meta = moor_api::Resource::meta_mut(&mut claim);
            meta.name = node_name.clone();
            meta.labels
                .insert("kubernetes.io/hostname".to_string(), node_name.clone());
            meta.annotations
                .insert(JOINED_BY_ANNOTATION.to_string(), caller.user.clone());
            moor_api::Resource::set_type_meta(&mut claim);
            match self.nodes.create(claim).await {
                Ok(_) => {}
                Err(crate::Error::AlreadyExists { .. }) => {
                    return Err(Status::already_exists(format!(
                        "node {node_name:?} is already registered: a join token cannot claim it \
                         (join under another --name, or delete the node first: moorctl delete \
                         node {node_name})"
                    )));
                }
                Err(err) => return Err(err.into()),
            }
        } else {
            return Err(Status::permission_denied(format!(
                "{} may not obtain a certificate for node {node_name:?}",
                caller.user
            )));
        }
        let certificate_pem = ca
            .sign_node_csr(&csr_pem, &node_name, *validity)
            .map_err(|err| Status::invalid_argument(format!("csr_pem: {err}")))?;
        tracing::info!(node = %node_name, by = %caller.user, "signed a node certificate");
        Ok(Response::new(SignNodeResponse {
            certificate_pem,
            ca_pem: ca.cert_pem().to_string(),
        }))
    }

    async fn join_server(
        &self,
        request: Request<JoinServerRequest>,
    ) -> Result<Response<JoinServerResponse>, Status> {
        let caller = moor_rpc::caller(&request).ok_or_else(|| {
            Status::failed_precondition(
                "this apiserver serves plain text (--insecure): no server can join through it",
            )
        })?;
        let in_group = |group: &str| caller.groups.iter().any(|g| g == group);
        if !in_group(MASTERS) && !in_group(SERVER_BOOTSTRAPPERS) {
            return Err(Status::permission_denied(format!(
                "{} may not join the control plane: that takes a token from `moor token create \
                 --control-plane`",
                caller.user
            )));
        }
        let (Some((ca, _)), Some(control_plane)) = (&self.signer, &self.control_plane) else {
            return Err(Status::failed_precondition(
                "this server runs no etcd member of its own (it was not started with `moor up \
                 --cluster-init` or joined with --control-plane), so no server can join through it",
            ));
        };
        let name = request.into_inner().server_name;
        moor_labels::validation::dns1123_subdomain(&name).map_err(|why| {
            Status::invalid_argument(format!("server_name: Invalid value: {name:?}: {why}"))
        })?;
        tracing::warn!(server = %name, by = %caller.user, "handed the cluster's keys to a joining server");
        Ok(Response::new(JoinServerResponse {
            ca_pem: ca.cert_pem().to_string(),
            ca_key_pem: ca.key_pem(),
            etcd_ca_pem: control_plane.etcd_ca.cert_pem().to_string(),
            etcd_ca_key_pem: control_plane.etcd_ca.key_pem(),
            etcd_endpoints: control_plane.etcd_endpoints.clone(),
        }))
    }

    async fn remove_server(
        &self,
        request: Request<RemoveServerRequest>,
    ) -> Result<Response<RemoveServerResponse>, Status> {
        let caller = moor_rpc::caller(&request).ok_or_else(|| {
            Status::failed_precondition(
                "this apiserver serves plain text (--insecure): it runs no etcd member",
            )
        })?;
        if !caller.groups.iter().any(|g| g == MASTERS) {
            return Err(Status::permission_denied(format!(
                "{} may not remove servers from the control plane: that takes an administrator",
                caller.user
            )));
        }
        let (Some(control_plane), Some(members)) = (&self.control_plane, &self.members) else {
            return Err(Status::failed_precondition(
                "this server runs no etcd member of its own: its etcd is managed elsewhere",
            ));
        };
        let name = request.into_inner().server_name;
        if name == control_plane.member_name {
            return Err(Status::failed_precondition(format!(
                "{name} is the server answering: ask another server, or run `moor leave` on it                  once it is stopped"
            )));
        }
        let unavailable = |err: moor_storage::Error| {
            Status::unavailable(format!(
                "etcd's membership cannot be read or changed: {err}"
            ))
        };
        let listed = members.list().await.map_err(unavailable)?;
        let label = |m: &moor_storage_etcd::Member| {
            if m.name.is_empty() {
                format!("{:x}", m.id)
            } else {
                m.name.clone()
            }
        };
        let Some(member) = listed.iter().find(|m| m.name == name) else {
            let names: Vec<String> = listed.iter().map(label).collect();
            return Err(Status::not_found(format!(
                "etcd has no member named {name:?} (its members: {})",
                names.join(", ")
            )));
        };
        members.remove(member.id).await.map_err(|err| {
            // etcd refuses a removal that would cost it its quorum.
            Status::failed_precondition(format!("etcd refused to remove {name}: {err}"))
        })?;
        tracing::warn!(server = %name, id = member.id, by = %caller.user, "removed a server's etcd member");
        Ok(Response::new(RemoveServerResponse {
            member_id: member.id,
            remaining: listed
                .iter()
                .filter(|m| m.id != member.id)
                .map(label)
                .collect(),
        }))
    }
}
