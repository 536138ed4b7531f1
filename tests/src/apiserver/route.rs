//! Request paths to what they address, following the REST layout of
//! `apiserver/pkg/endpoints/installer.go`.

use super::resources::{self, ResourceType};

/// What a path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `/version`.
    Version,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1`, `/apis/{group}/{version}`.
    Resources(String, String),
    /// `/healthz`, `/livez`, `/readyz`.
    Health,
    /// `/weir-test/{control}`.
    Control(String),
    /// A collection, in one namespace or across all of them.
    Collection {
        /// The resource.
        resource: &'static ResourceType,
        /// The namespace, if the path names one.
        namespace: Option<String>,
    },
    /// One object, or its `status` subresource.
    Object {
        /// The resource.
        resource: &'static ResourceType,
        /// The namespace (namespaced resources).
        namespace: Option<String>,
        /// The object's name.
        name: String,
        /// Whether the path ends in `/status`.
        status: bool,
    },
}

/// Parses `path`; `None` for paths the server does not serve (404).
#[must_use]
pub fn parse(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match segments.as_slice() {
        ["version"] => Some(Target::Version),
        ["healthz" | "livez" | "readyz"] => Some(Target::Health),
        ["weir-test", control] => Some(Target::Control((*control).to_owned())),
        ["api"] => Some(Target::CoreVersions),
        ["apis"] => Some(Target::Groups),
        ["apis", group] => Some(Target::Group((*group).to_owned())),
        ["api", version] => Some(Target::Resources(String::new(), (*version).to_owned())),
        ["apis", group, version] => Some(Target::Resources((*group).to_owned(), (*version).to_owned())),
        ["api", version, rest @ ..] => resource_path("", version, rest),
        ["apis", group, version, rest @ ..] => resource_path(group, version, rest),
        _ => None,
    }
}

fn resource_path(group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let find = |plural: &str| resources::find(group, version, plural);
    let object = |resource: &'static ResourceType, namespace: Option<&str>, name: &str, status: bool| {
        (resource.namespaced == namespace.is_some() && (!status || resource.status_subresource)).then(|| {
            Target::Object {
                resource,
                namespace: namespace.map(str::to_owned),
                name: name.to_owned(),
                status,
            }
        })
    };
    match rest {
        // Before the namespaced collection: `namespaces/{name}/status`.
        [plural, name, "status"] => object(find(plural)?, None, name, true),
        ["namespaces", namespace, plural] => {
            let resource = find(plural).filter(|resource| resource.namespaced)?;
            Some(Target::Collection {
                resource,
                namespace: Some((*namespace).to_owned()),
            })
        }
        ["namespaces", namespace, plural, name] => object(find(plural)?, Some(namespace), name, false),
        ["namespaces", namespace, plural, name, "status"] => {
            object(find(plural)?, Some(namespace), name, true)
        }
        [plural] => Some(Target::Collection {
            resource: find(plural)?,
            namespace: None,
        }),
        [plural, name] => object(find(plural)?, None, name, false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_address_collections_objects_and_status() {
        let Some(Target::Collection { resource, namespace }) = parse("/api/v1/namespaces/demo/services")
        else {
            panic!("namespaced collection");
        };
        assert_eq!(
            (resource.plural, namespace.as_deref()),
            ("services", Some("demo"))
        );
        assert!(matches!(
            parse("/api/v1/services"),
            Some(Target::Collection { namespace: None, .. })
        ));
        assert!(matches!(
            parse("/api/v1/namespaces/demo"),
            Some(Target::Object {
                status: false,
                namespace: None,
                ..
            })
        ));
        assert!(matches!(
            parse("/api/v1/namespaces/demo/status"),
            Some(Target::Object { status: true, .. })
        ));
        assert!(matches!(
            parse("/apis/discovery.k8s.io/v1/namespaces/d/endpointslices/s"),
            Some(Target::Object { status: false, .. })
        ));
        assert!(matches!(
            parse("/api/v1/nodes/node-1/status"),
            Some(Target::Object { status: true, .. })
        ));
        // No status subresource, cluster-scoped under a namespace, unknown.
        assert_eq!(
            parse("/apis/discovery.k8s.io/v1/namespaces/d/endpointslices/s/status"),
            None
        );
        assert_eq!(parse("/api/v1/namespaces/d/nodes/n"), None);
        assert_eq!(parse("/api/v1/configmaps"), None);
        assert_eq!(parse("/api/v1/namespaces/d/services/x/scale"), None);
    }
}
