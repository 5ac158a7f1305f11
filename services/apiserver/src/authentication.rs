//! The Authentication service: tells callers who the apiserver takes them
//! to be (`moorctl auth whoami`). The checking itself happens before any
//! service, in moor-rpc's authentication layer.

use moor_api::authentication::v1::authentication_server::Authentication;
use moor_api::authentication::v1::{UserInfo, WhoAmIRequest};
use tonic::{Request, Response, Status};

/// Answers WhoAmI from the caller the authentication layer found.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WhoAmI;

#[tonic::async_trait]
impl Authentication for WhoAmI {
    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<UserInfo>, Status> {
        // No caller: a plain-text (`--insecure`) server authenticates nobody.
        let info = moor_rpc::caller(&request).map_or_else(UserInfo::default, |caller| UserInfo {
            username: caller.user,
            groups: caller.groups,
        });
        Ok(Response::new(info))
    }
}
