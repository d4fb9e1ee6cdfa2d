//! Registry documents (RM-REG-01..09, 表1) and their envelopes.
//!
//! Every object travels as an envelope (`id`, `name`, ownership, `labels`, `generation`,
//! timestamps) around a kind-specific `spec`. References to other objects (a site's platform,
//! a resource's site, a link's ends) may be given by id or by name; the server stores the id.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

pub type Labels = BTreeMap<String, String>;

/// Who may read an object besides its own tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Readable by every authenticated user (the shared federation).
    Public,
    /// Readable only inside the owning tenant (and by operators).
    #[default]
    Tenant,
}

/// A field-level validation failure: `field` is a dotted path such as `spec.location.lat`.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub field: String,
    pub message: String,
}

/// Collects violations with the path prefix of the part being checked.
#[derive(Debug, Default)]
pub struct Violations {
    pub list: Vec<Violation>,
}

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.list.push(Violation {
            field: field.into(),
            message: message.into(),
        });
    }

    fn check(&mut self, ok: bool, field: &str, message: &str) {
        if !ok {
            self.add(field, message);
        }
    }

    pub(crate) fn non_empty(&mut self, value: &str, field: &str) {
        self.check(!value.trim().is_empty(), field, "must not be empty");
    }

    fn non_negative(&mut self, value: f64, field: &str) {
        self.check(
            value.is_finite() && value >= 0.0,
            field,
            "must be a finite number >= 0",
        );
    }
}

/// Checks the semantic rules serde cannot express. Paths are relative to the spec and
/// prefixed with `spec.`.
pub trait Validate {
    fn validate(&self, v: &mut Violations);
}

// ---------------------------------------------------------------- platforms (RM-REG-01)

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlatformLevel {
    /// A national hub (枢纽) platform.
    Hub,
    /// A provincial (省) platform.
    Province,
    /// An industry (行业) platform.
    Industry,
}

/// The classes of compute a platform onboards (000 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComputeClass {
    General,
    Intelligent,
    Supercomputing,
    Quantum,
}

/// A computing-power scheduling platform: 调度平台.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformSpec {
    pub level: PlatformLevel,
    /// 下设纳管算力类型: the compute classes managed beneath this platform.
    pub compute_types: Vec<ComputeClass>,
    /// Region the platform serves, e.g. `Beijing-Tianjin-Hebei`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Validate for PlatformSpec {
    fn validate(&self, v: &mut Violations) {
        v.check(
            !self.compute_types.is_empty(),
            "spec.compute_types",
            "list at least one compute class (general, intelligent, supercomputing, quantum)",
        );
    }
}

// ---------------------------------------------------------------- clouds (RM-REG-02)

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CloudType {
    Public,
    /// 专有云 (dedicated cloud).
    Dedicated,
    Private,
    Edge,
    Hybrid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudSpec {
    pub cloud_type: CloudType,
    /// 所属服务商: the service provider running the cloud.
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Validate for CloudSpec {
    fn validate(&self, v: &mut Violations) {
        v.non_empty(&self.provider, "spec.provider");
    }
}

// ---------------------------------------------------------------- sites (RM-REG-03)

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ChipType {
    Cpu,
    Gpu,
    Npu,
    Dcu,
    Fpga,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GeoLocation {
    /// Degrees north, -90..=90.
    pub lat: f64,
    /// Degrees east, -180..=180.
    pub lon: f64,
}

/// 可用资源规模: the scale a site offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteScale {
    #[serde(default)]
    pub cpu_cores: u64,
    #[serde(default)]
    pub gpus: u64,
    #[serde(default)]
    pub npus: u64,
    #[serde(default)]
    pub memory_gib: u64,
    #[serde(default)]
    pub storage_tib: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SiteHealth {
    #[default]
    Healthy,
    Degraded,
    Down,
}

/// A resource node (资源节点) of the standard: one data centre or cluster. The machines
/// inside it are nodes, reported later by agents or back ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    /// 所属地域, e.g. `Hebei` or `Ningxia`.
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    pub location: GeoLocation,
    /// Owning scheduling platform, by id or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Cloud platform the site belongs to, by id or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
    /// The supplier (owner organisation) of the site.
    pub supplier: String,
    /// 可用资源类型: the kinds of chip available.
    #[serde(default)]
    pub resource_types: Vec<ChipType>,
    #[serde(default)]
    pub scale: SiteScale,
    /// Power usage effectiveness of the data centre, >= 1.0.
    #[serde(default = "default_pue")]
    pub pue: f64,
    /// Electricity price in CNY per kWh.
    #[serde(default)]
    pub electricity_price: f64,
    /// Grid carbon intensity in gCO2 per kWh, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carbon_intensity: Option<f64>,
    #[serde(default)]
    pub health: SiteHealth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Who runs the work placed on the site: cpn agents (the default) or a Slurm cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<SiteBackend>,
}

/// A site's execution back end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SiteBackend {
    /// Hosts running `cpn agent --site NAME` register themselves as nodes.
    Agents,
    /// A Slurm cluster: its partition's nodes are imported as the site's nodes and tasks
    /// become Slurm jobs.
    Slurm(SlurmBackendSpec),
}

/// How cpn reaches a Slurm cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlurmBackendSpec {
    /// Partition to import and submit to; default: the cluster's default partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// slurmrestd as `unix:/path/to/socket` or `http://host:port`; absent: the Slurm CLI
    /// (sbatch, squeue, scontrol, scancel) is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest_url: Option<String>,
    /// slurmrestd API version: Slurm 22.05 speaks v0.0.36..v0.0.38, current releases v0.0.40+.
    #[serde(default = "default_slurm_api")]
    pub api_version: String,
    /// User name for JWT auth (`X-SLURM-USER-NAME`); not needed on a unix socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// File holding a JWT (`scontrol token`), read at each use so it can be rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// `SLURM_CONF` for the CLI, when not the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_conf: Option<String>,
    /// Directory for job scripts and output, visible to the Slurm nodes and to cpn.
    pub work_dir: String,
}

fn default_slurm_api() -> String {
    "v0.0.38".into()
}

fn default_pue() -> f64 {
    1.5
}

impl Validate for SiteSpec {
    fn validate(&self, v: &mut Violations) {
        v.non_empty(&self.region, "spec.region");
        v.non_empty(&self.supplier, "spec.supplier");
        v.check(
            self.location.lat.is_finite() && (-90.0..=90.0).contains(&self.location.lat),
            "spec.location.lat",
            "latitude must be between -90 and 90",
        );
        v.check(
            self.location.lon.is_finite() && (-180.0..=180.0).contains(&self.location.lon),
            "spec.location.lon",
            "longitude must be between -180 and 180",
        );
        v.check(
            self.pue.is_finite() && self.pue >= 1.0 && self.pue <= 5.0,
            "spec.pue",
            "PUE must be between 1.0 and 5.0",
        );
        v.non_negative(self.electricity_price, "spec.electricity_price");
        v.non_negative(self.scale.storage_tib, "spec.scale.storage_tib");
        if let Some(ci) = self.carbon_intensity {
            v.non_negative(ci, "spec.carbon_intensity");
        }
        if let Some(SiteBackend::Slurm(s)) = &self.backend {
            v.non_empty(&s.work_dir, "spec.backend.work_dir");
            v.check(
                s.api_version.starts_with("v0.0."),
                "spec.backend.api_version",
                "a slurmrestd API version looks like v0.0.38",
            );
            if let Some(u) = &s.rest_url {
                v.check(
                    u.starts_with("unix:") || u.starts_with("http://"),
                    "spec.backend.rest_url",
                    "give unix:/path/to/slurmrestd.sock or http://host:port",
                );
            }
        }
    }
}

// ---------------------------------------------------------------- resources (RM-REG-04..07)

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    Compute,
    Network,
    Storage,
    Security,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Compute => "compute",
            ResourceType::Network => "network",
            ResourceType::Storage => "storage",
            ResourceType::Security => "security",
        }
    }
}

/// 供给方式: how the compute is supplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SupplyMode {
    BareMetal,
    Vm,
    Container,
    Kubernetes,
    Slurm,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComputeSpec {
    pub supply_mode: SupplyMode,
    /// 芯片类型.
    pub chip_type: ChipType,
    /// 芯片架构, e.g. `x86_64`, `arm64`, `ampere`, `hopper`, `davinci`.
    pub architecture: String,
    /// 芯片型号, e.g. `A100-80G`, `H800`, `Ascend-910B`, `Kunpeng-920`.
    pub model: String,
    /// Number of chips (or CPU cores for chip_type cpu).
    pub count: u64,
    /// Memory per chip in GiB (device memory for accelerators, host memory per core for CPUs).
    #[serde(default)]
    pub memory_gib: f64,
    /// Peak performance per chip in TFLOPS (FP16 for accelerators, FP64 for CPUs), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tflops: Option<f64>,
    /// Price in CNY per chip-hour.
    #[serde(default)]
    pub unit_price: f64,
    /// Power draw per chip at load, in watts.
    #[serde(default)]
    pub power_watts: f64,
    /// PUE of the hall holding it, when it differs from the site's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pue: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NetworkKind {
    Internet,
    /// 专网 / private line.
    PrivateLine,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    pub kind: NetworkKind,
    pub bandwidth_mbps: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Free-form specification, e.g. `10GE x2, BGP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StorageKind {
    Object,
    File,
    Block,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageSpec {
    pub kind: StorageKind,
    pub capacity_gib: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput_mbps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecurityKind {
    Firewall,
    Waf,
    Encryption,
    /// Data masking (desensitization).
    Masking,
    /// Intrusion detection system.
    Ids,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecuritySpec {
    pub kind: SecurityKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

/// A resource inside a site. `type` says which one of `compute`, `network`, `storage` or
/// `security` must be present (and the others absent); separate sections instead of a
/// tagged union keep error paths precise (`spec.compute.count`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// The site holding the resource, by id or name.
    pub site: String,
    #[serde(rename = "type")]
    pub resource_type: ResourceType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute: Option<ComputeSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<SecuritySpec>,
}

impl Validate for ResourceSpec {
    fn validate(&self, v: &mut Violations) {
        v.non_empty(&self.site, "spec.site");
        let sections = [
            (ResourceType::Compute, self.compute.is_some()),
            (ResourceType::Network, self.network.is_some()),
            (ResourceType::Storage, self.storage.is_some()),
            (ResourceType::Security, self.security.is_some()),
        ];
        for (t, present) in sections {
            let field = format!("spec.{}", t.as_str());
            if t == self.resource_type && !present {
                v.add(field, format!("required when type is {}", t.as_str()));
            } else if t != self.resource_type && present {
                v.add(
                    field,
                    format!(
                        "must be absent when type is {}",
                        self.resource_type.as_str()
                    ),
                );
            }
        }
        if let Some(c) = &self.compute {
            v.non_empty(&c.architecture, "spec.compute.architecture");
            v.non_empty(&c.model, "spec.compute.model");
            v.check(c.count > 0, "spec.compute.count", "must be at least 1");
            v.non_negative(c.memory_gib, "spec.compute.memory_gib");
            v.non_negative(c.unit_price, "spec.compute.unit_price");
            v.non_negative(c.power_watts, "spec.compute.power_watts");
            if let Some(t) = c.tflops {
                v.non_negative(t, "spec.compute.tflops");
            }
            if let Some(p) = c.pue {
                v.check(
                    p.is_finite() && (1.0..=5.0).contains(&p),
                    "spec.compute.pue",
                    "PUE must be between 1.0 and 5.0",
                );
            }
        }
        if let Some(n) = &self.network {
            v.check(
                n.bandwidth_mbps.is_finite() && n.bandwidth_mbps > 0.0,
                "spec.network.bandwidth_mbps",
                "must be a number > 0",
            );
        }
        if let Some(s) = &self.storage {
            v.check(
                s.capacity_gib.is_finite() && s.capacity_gib > 0.0,
                "spec.storage.capacity_gib",
                "must be a number > 0",
            );
            if let Some(t) = s.throughput_mbps {
                v.non_negative(t, "spec.storage.throughput_mbps");
            }
        }
    }
}

// ---------------------------------------------------------------- links (RM-TOPO, 表2)

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkType {
    Internet,
    PrivateLine,
}

/// A network connection between two sites with its nominal metrics. Observed metrics are
/// posted separately and kept as history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// One end, by site id or name.
    pub from: String,
    /// The other end, by site id or name.
    pub to: String,
    pub link_type: LinkType,
    /// Round-trip latency in milliseconds.
    pub latency_ms: f64,
    pub bandwidth_gbps: f64,
    #[serde(default)]
    pub jitter_ms: f64,
    /// Packet loss in percent.
    #[serde(default)]
    pub loss_pct: f64,
    /// Usable in both directions (the default).
    #[serde(default = "yes")]
    pub bidirectional: bool,
}

fn yes() -> bool {
    true
}

impl Validate for LinkSpec {
    fn validate(&self, v: &mut Violations) {
        v.non_empty(&self.from, "spec.from");
        v.non_empty(&self.to, "spec.to");
        v.check(
            self.from != self.to,
            "spec.to",
            "a link must join two different sites",
        );
        LinkMetrics {
            latency_ms: self.latency_ms,
            bandwidth_gbps: self.bandwidth_gbps,
            jitter_ms: self.jitter_ms,
            loss_pct: self.loss_pct,
        }
        .validate_at("spec", v);
    }
}

/// Observed metrics of a link (RM-TOPO-02).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkMetrics {
    pub latency_ms: f64,
    pub bandwidth_gbps: f64,
    #[serde(default)]
    pub jitter_ms: f64,
    #[serde(default)]
    pub loss_pct: f64,
}

impl LinkMetrics {
    pub fn validate_at(&self, prefix: &str, v: &mut Violations) {
        v.non_negative(self.latency_ms, &format!("{prefix}.latency_ms"));
        v.non_negative(self.bandwidth_gbps, &format!("{prefix}.bandwidth_gbps"));
        v.non_negative(self.jitter_ms, &format!("{prefix}.jitter_ms"));
        v.check(
            self.loss_pct.is_finite() && (0.0..=100.0).contains(&self.loss_pct),
            &format!("{prefix}.loss_pct"),
            "must be between 0 and 100",
        );
    }
}

/// Observed load of a site (RM-TOPO-02), posted by monitoring or agents.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteMetrics {
    /// CPU utilisation, 0..=1.
    #[serde(default)]
    pub cpu_util: f64,
    /// GPU utilisation, 0..=1.
    #[serde(default)]
    pub gpu_util: f64,
    /// Memory utilisation, 0..=1.
    #[serde(default)]
    pub mem_util: f64,
    /// Facility power in kW, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_kw: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<SiteHealth>,
}

impl SiteMetrics {
    pub fn validate_at(&self, prefix: &str, v: &mut Violations) {
        for (name, x) in [
            ("cpu_util", self.cpu_util),
            ("gpu_util", self.gpu_util),
            ("mem_util", self.mem_util),
        ] {
            v.check(
                x.is_finite() && (0.0..=1.0).contains(&x),
                &format!("{prefix}.{name}"),
                "must be a fraction between 0 and 1",
            );
        }
        if let Some(p) = self.power_kw {
            v.non_negative(p, &format!("{prefix}.power_kw"));
        }
    }
}

// ---------------------------------------------------------------- tags (RM-TAG, 表3)

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TagGroup {
    Location,
    Power,
    Resource,
    Capability,
    Business,
    Custom,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TagStatus {
    /// The tag can be applied.
    #[default]
    Active,
    /// Existing uses stay; applying it again is refused.
    Disabled,
}

/// 操作标识: what may be done with a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TagOperation {
    Modify,
    Delete,
    Share,
}

fn all_tag_operations() -> Vec<TagOperation> {
    vec![
        TagOperation::Modify,
        TagOperation::Delete,
        TagOperation::Share,
    ]
}

/// An entry of the tag library. The object's name is the label key (e.g. `gpu.model`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagSpec {
    /// 标签分组.
    pub group: TagGroup,
    #[serde(default)]
    pub status: TagStatus,
    #[serde(default = "all_tag_operations")]
    pub operations: Vec<TagOperation>,
    /// 标签继承: whether the tag flows from platforms and clouds to sites and from sites to
    /// their resources.
    #[serde(default)]
    pub inheritable: bool,
    /// 策略匹配: whether scheduling policies may filter on it.
    #[serde(default = "yes")]
    pub policy_match: bool,
    /// When set, applying the tag with any other value is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_values: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Validate for TagSpec {
    fn validate(&self, v: &mut Violations) {
        if let Some(values) = &self.allowed_values {
            for (i, value) in values.iter().enumerate() {
                if let Err(e) = cpn_model::validate_label_value(value) {
                    v.add(format!("spec.allowed_values[{i}]"), e.to_string());
                }
            }
        }
    }
}

/// A reference to one object for batch tagging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectRef {
    /// `platform`, `cloud`, `site`, `resource` or `link`.
    pub kind: String,
    /// Id or name.
    pub id: String,
}

/// Apply a tag to many objects in one atomic call (RM-TAG-02): the listed `targets`, and/or
/// every object of `kind` that matches `selector`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyTag {
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub targets: Vec<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// Remove a tag from objects; same targeting as `ApplyTag`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveTag {
    #[serde(default)]
    pub targets: Vec<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaggingResult {
    /// Objects whose labels changed.
    pub changed: u64,
    /// Objects that already had (or already lacked) the label.
    pub unchanged: u64,
}

// ---------------------------------------------------------------- envelopes

/// Declares the read, create and update shapes of one kind, so every kind has the same
/// envelope and OpenAPI names each one (`Site`, `SiteCreate`, `SiteUpdate`).
#[macro_export]
#[doc(hidden)]
macro_rules! registry_kind {
    ($obj:ident, $create:ident, $update:ident, $spec:ty) => {
        #[derive(
            Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize, ::utoipa::ToSchema,
        )]
        pub struct $obj {
            pub id: String,
            pub name: String,
            /// Owning tenant (name).
            pub tenant: String,
            /// Owning user (username).
            pub owner: String,
            pub visibility: $crate::registry::Visibility,
            /// Labels set on this object.
            #[serde(default)]
            pub labels: $crate::registry::Labels,
            /// Own labels plus those inherited from platform, cloud and site.
            #[serde(default)]
            pub effective_labels: $crate::registry::Labels,
            /// Increases by one on every change; send it back on update.
            pub generation: u64,
            pub created_at: ::chrono::DateTime<::chrono::Utc>,
            pub updated_at: ::chrono::DateTime<::chrono::Utc>,
            pub spec: $spec,
        }

        #[derive(
            Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize, ::utoipa::ToSchema,
        )]
        #[serde(deny_unknown_fields)]
        pub struct $create {
            /// Unique per kind: letters (any script), digits, `-`, `_` and `.`, starting
            /// with a letter or digit.
            #[schema(min_length = 1, max_length = 63)]
            pub name: String,
            #[serde(default)]
            pub labels: $crate::registry::Labels,
            #[serde(default)]
            pub visibility: Option<$crate::registry::Visibility>,
            /// Owning tenant; only operators may name another tenant than their own.
            #[serde(default)]
            pub tenant: Option<String>,
            pub spec: $spec,
        }

        /// Replaces labels, visibility and spec. Send the generation you read, in this
        /// field or as `If-Match`; a stale one is refused with 409.
        #[derive(
            Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize, ::utoipa::ToSchema,
        )]
        #[serde(deny_unknown_fields)]
        pub struct $update {
            #[serde(default)]
            pub generation: Option<u64>,
            #[serde(default)]
            pub labels: Option<$crate::registry::Labels>,
            #[serde(default)]
            pub visibility: Option<$crate::registry::Visibility>,
            pub spec: $spec,
        }
    };
}

registry_kind!(Platform, PlatformCreate, PlatformUpdate, PlatformSpec);
registry_kind!(Cloud, CloudCreate, CloudUpdate, CloudSpec);
registry_kind!(Site, SiteCreate, SiteUpdate, SiteSpec);
registry_kind!(Resource, ResourceCreate, ResourceUpdate, ResourceSpec);
registry_kind!(Link, LinkCreate, LinkUpdate, LinkSpec);
registry_kind!(Tag, TagCreate, TagUpdate, TagSpec);

#[cfg(test)]
mod tests {
    use super::*;

    fn violations(spec: &impl Validate) -> Vec<String> {
        let mut v = Violations::default();
        spec.validate(&mut v);
        v.list.into_iter().map(|x| x.field).collect()
    }

    #[test]
    fn resource_sections_must_match_type() {
        let spec = ResourceSpec {
            site: "s".into(),
            resource_type: ResourceType::Compute,
            compute: None,
            network: None,
            storage: Some(StorageSpec {
                kind: StorageKind::Object,
                capacity_gib: 1.0,
                iops: None,
                throughput_mbps: None,
                region: None,
                provider: None,
            }),
            security: None,
        };
        assert_eq!(violations(&spec), vec!["spec.compute", "spec.storage"]);
    }

    #[test]
    fn site_coordinates_are_checked() {
        let spec: SiteSpec = serde_json::from_value(serde_json::json!({
            "region": "Ningxia", "supplier": "x",
            "location": {"lat": 95.0, "lon": 105.2}, "pue": 0.9
        }))
        .unwrap();
        assert_eq!(violations(&spec), vec!["spec.location.lat", "spec.pue"]);
    }
}
