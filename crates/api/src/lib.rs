//! moor's API: the Rust types and tonic services generated from proto/, the
//! descriptors they came from, and the `Resource` trait that lets generic code
//! (the apiserver's store, the client, the CLI) treat every kind alike.

mod resource;
pub mod watch;
pub mod well_known;

pub use resource::{Resource, StatusKind};
pub use watch::WatchEvent;

/// The generated code, one module per proto package.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod generated {
    pub mod moor {
        pub mod meta {
            pub mod v1 {
                tonic::include_proto!("moor.meta.v1");
            }
        }
        pub mod authentication {
            pub mod v1 {
                tonic::include_proto!("moor.authentication.v1");
            }
        }
        pub mod core {
            pub mod v1 {
                tonic::include_proto!("moor.core.v1");
            }
        }
        pub mod apps {
            pub mod v1 {
                tonic::include_proto!("moor.apps.v1");
            }
        }
        pub mod coordination {
            pub mod v1 {
                tonic::include_proto!("moor.coordination.v1");
            }
        }
        pub mod node {
            pub mod v1 {
                tonic::include_proto!("moor.node.v1");
            }
        }
        pub mod scheduler {
            pub mod v1 {
                tonic::include_proto!("moor.scheduler.v1");
            }
        }
        pub mod proxy {
            pub mod v1 {
                tonic::include_proto!("moor.proxy.v1");
            }
        }
    }
}

pub use generated::moor::{apps, authentication, coordination, core, meta, node, proxy, scheduler};

/// The encoded `FileDescriptorSet` of every file in proto/ and its imports,
/// with comments: served by gRPC reflection and read by the codec and the CLI.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/moor_descriptor.bin"));

/// The descriptor pool of the API, decoded once.
pub fn descriptor_pool() -> &'static prost_reflect::DescriptorPool {
    static POOL: std::sync::OnceLock<prost_reflect::DescriptorPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        // The bytes were produced by protoc in our own build; failing to
        // decode them is a build defect, not an input error.
        #[allow(clippy::expect_used)]
        prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET)
            .expect("the compiled-in descriptor set decodes")
    })
}
