//! Talking to the cluster: the client from the kubeconfig, and who the apiserver says we are.

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Api, Client, Config};

use crate::cli::Global;
use crate::error::Error;

/// A client for the cluster the flags and the kubeconfig name, and the namespace to work in.
pub struct Cluster {
    pub client: Client,
    pub namespace: String,
    /// The kubeconfig's settings: the hunting API is reached with its credentials.
    pub config: Config,
}

impl Cluster {
    /// Reads `--kubeconfig`, else KUBECONFIG, else ~/.kube/config; inside a pod with none of
    /// them, the pod's ServiceAccount, as kubectl does.
    pub async fn connect(global: &Global) -> Result<Cluster, Error> {
        let options = KubeConfigOptions { context: global.context.clone(), ..KubeConfigOptions::default() };
        let config = match &global.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
                Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(kubeconfig_error)?
            }
            None => match Config::from_kubeconfig(&options).await {
                Ok(config) => config,
                Err(e) if no_kubeconfig(&e) && global.context.is_none() => {
                    Config::incluster().map_err(|_| Error::NoCluster(e.to_string()))?
                }
                Err(e) => return Err(kubeconfig_error(e)),
            },
        };
        let namespace = global.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config.clone()).map_err(Error::Client)?;
        Ok(Cluster { client, namespace, config })
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The caller's identity as the apiserver authenticated it (`kubectl auth whoami`): the
    /// only name the admission policy accepts in requestedBy, author, by and triagedBy.
    pub async fn identity(&self) -> Result<String, Error> {
        let review = SelfSubjectReview { metadata: Default::default(), status: None };
        let reviewed =
            Api::<SelfSubjectReview>::all(self.client.clone()).create(&PostParams::default(), &review).await?;
        reviewed
            .status
            .and_then(|s| s.user_info)
            .and_then(|u| u.username)
            .filter(|name| !name.is_empty())
            .ok_or(Error::NoIdentity)
    }
}

fn kubeconfig_error(e: KubeconfigError) -> Error {
    match e {
        KubeconfigError::LoadContext(context) => Error::UnknownContext(context),
        e => Error::Kubeconfig(e),
    }
}

/// No kubeconfig at all, as opposed to a kubeconfig that is broken.
fn no_kubeconfig(e: &KubeconfigError) -> bool {
    match e {
        KubeconfigError::FindPath | KubeconfigError::CurrentContextNotSet => true,
        KubeconfigError::ReadConfig(io, _) => io.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}
