//! The validated model: what survives validation, in types that cannot hold
//! the mistakes validation rejects (ports are non-zero u16, addresses parsed).
//! Every object remembers where it was defined, for logs and cross-object
//! diagnostics.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroU16;

use crate::diag::Span;

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// IANA protocol number, as in the IP header and the BPF map keys.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// namespace/name of a namespaced object, plus where it was defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub namespace: String,
    pub name: String,
    /// Empty for EndpointSlices: nothing downstream reads their labels (the
    /// one that matters is `EndpointSlice::service_name`), and at 100,000
    /// slices the maps would cost over 50 MB.
    pub labels: Labels,
    pub origin: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    ClusterIp,
    NodePort,
    LoadBalancer,
    ExternalName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficPolicy {
    Cluster,
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    Number(NonZeroU16),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// `""` when the service has a single unnamed port.
    pub name: String,
    pub protocol: Protocol,
    pub port: NonZeroU16,
    pub target_port: PortRef,
    pub node_port: Option<NonZeroU16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub meta: ObjectMeta,
    pub service_type: ServiceType,
    /// Empty for headless services (`clusterIP: None`) and ExternalName.
    pub cluster_ips: Vec<IpAddr>,
    pub external_ips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    /// `sessionAffinity: ClientIP` timeout in seconds (default 10800); None = no affinity.
    pub affinity_timeout: Option<u32>,
    pub internal_traffic_policy: TrafficPolicy,
    pub external_traffic_policy: TrafficPolicy,
    /// `status.loadBalancer.ingress[].ip`, without those with `ipMode: Proxy`.
    pub lb_ingress_ips: Vec<IpAddr>,
    /// `spec.loadBalancerSourceRanges` (IPv4 prefixes, host bits cleared).
    pub lb_source_ranges: Vec<(std::net::Ipv4Addr, u8)>,
    /// `spec.healthCheckNodePort`.
    pub health_check_node_port: Option<NonZeroU16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressType {
    IPv4,
    IPv6,
    Fqdn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addresses: Vec<IpAddr>,
    /// `conditions.ready`; an absent value means ready (as the API documents).
    pub ready: bool,
    /// `conditions.serving`; absent means the same as `ready`.
    pub serving: bool,
    /// `conditions.terminating`; absent means false.
    pub terminating: bool,
    pub node_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPort {
    /// `""` for an unnamed port (matches a service port with an empty name).
    pub name: String,
    pub protocol: Protocol,
    pub port: Option<NonZeroU16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSlice {
    pub meta: ObjectMeta,
    /// The `kubernetes.io/service-name` label.
    pub service_name: String,
    pub address_type: AddressType,
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<EndpointPort>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub port: NonZeroU16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub meta: ObjectMeta,
    pub node_name: Option<String>,
    /// `status.podIPs` (or `status.podIP`), in order.
    pub ips: Vec<IpAddr>,
    pub host_network: bool,
    pub container_ports: Vec<ContainerPort>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    /// Always includes `kubernetes.io/metadata.name: <name>`.
    pub labels: Labels,
    pub origin: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectorOp {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorRequirement {
    pub key: String,
    pub op: SelectorOp,
    pub values: Vec<String>,
}

/// A label selector; the empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    pub match_labels: Labels,
    pub match_expressions: Vec<SelectorRequirement>,
}

impl LabelSelector {
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.op {
                    SelectorOp::In => value.is_some_and(|v| r.values.contains(v)),
                    SelectorOp::NotIn => value.is_none_or(|v| !r.values.contains(v)),
                    SelectorOp::Exists => value.is_some(),
                    SelectorOp::DoesNotExist => value.is_none(),
                }
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyPeer {
    /// `podSelector` and/or `namespaceSelector`. None for namespace_selector
    /// means "the policy's own namespace"; None for pod_selector means all pods.
    Pods {
        pod_selector: Option<LabelSelector>,
        namespace_selector: Option<LabelSelector>,
    },
    IpBlock {
        cidr: IpNet,
        except: Vec<IpNet>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPort {
    pub protocol: Protocol,
    /// None = all ports of the protocol.
    pub port: Option<PortRef>,
    /// Inclusive end of a numeric range (`endPort`), only with a numeric port.
    pub end_port: Option<NonZeroU16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyRule {
    /// Empty = all peers.
    pub peers: Vec<PolicyPeer>,
    /// Empty = all ports and protocols.
    pub ports: Vec<PolicyPort>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicy {
    pub meta: ObjectMeta,
    pub pod_selector: LabelSelector,
    /// After upstream defaulting: Ingress always unless policyTypes says
    /// otherwise, Egress when listed or when egress rules are present.
    pub ingress_isolation: bool,
    pub egress_isolation: bool,
    pub ingress: Vec<PolicyRule>,
    pub egress: Vec<PolicyRule>,
}

/// The whole validated directory. Every collection is sorted by
/// (namespace, name), so compiling it is deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cluster {
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    pub pods: Vec<Pod>,
    /// Includes namespaces that only Pods or other objects name (label
    /// `kubernetes.io/metadata.name` only).
    pub namespaces: Vec<Namespace>,
    pub policies: Vec<NetworkPolicy>,
}
