//! Flags (with their environment variables) over the file over defaults,
//! then the checks that span several settings. A value from the file is
//! parsed here, so that its error names the file and the key.

use std::fmt::Display;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use ipnetwork::Ipv4Network;

use super::{ApiServer, DEFAULT_API_SERVER_PORT, parse_host};
use super::{
    DEFAULT_HEALTH_ADDRESS, DEFAULT_METRICS_ADDRESS, DEFAULT_VERDICT_SOCKET, Error, FileConfig, Flags,
    Origin, Result, Settings, Source, parse_port_range,
};
use crate::datapath::MapSizes;
use crate::desired::Algorithm;
use crate::reconcile::maglev;

/// The two inputs of a merge.
struct Merge<'a> {
    flags: &'a Flags,
    file: &'a FileConfig,
}

pub(super) fn merge(flags: &Flags, file: &FileConfig) -> Result<Settings> {
    let m = Merge { flags, file };
    let node_name = flags.node_name.clone().or(file.node_name.clone());
    let poll = m.ranged(
        flags.poll_interval_ms,
        "--poll-interval-ms",
        file.poll_interval_ms,
        "pollIntervalMs",
        10..=60_000,
    )?;
    let settings = Settings {
        config_file: flags.config.clone(),
        source: m.source()?,
        bpffs: flags
            .bpffs
            .clone()
            .or(file.bpffs.clone())
            .unwrap_or_else(|| "/sys/fs/bpf/weir".into()),
        cgroup: flags
            .cgroup
            .clone()
            .or(file.cgroup.clone())
            .unwrap_or_else(|| "/sys/fs/cgroup".into()),
        status_file: flags.status_file.clone().or(file.status_file.clone()),
        poll_interval: Duration::from_millis(poll.unwrap_or(500)),
        node_name,
        cni_conf_dir: flags
            .cni_conf_dir
            .clone()
            .or(file.cni_conf_dir.clone())
            .unwrap_or_else(|| "/etc/cni/net.d".into()),
        cni_data_dir: flags
            .cni_data_dir
            .clone()
            .or(file.cni_data_dir.clone())
            .unwrap_or_else(|| "/var/lib/cni/weir".into()),
        pod_mtu: m
            .ranged(flags.pod_mtu, "--pod-mtu", file.pod_mtu, "podMTU", 68..=65_535)?
            .unwrap_or(1500),
        device: flags.device.clone().or(file.device.clone()),
        cluster_cidr: m.pick(
            flags.cluster_cidr,
            file.cluster_cidr.as_deref(),
            "clusterCIDR",
            parse_cidr,
        )?,
        service_cidr: m.pick(
            flags.service_cidr,
            file.service_cidr.as_deref(),
            "serviceCIDR",
            parse_cidr,
        )?,
        masquerade: flags.masquerade || file.masquerade == Some(true),
        node_port_range: m
            .pick(
                flags.node_port_range.clone(),
                file.node_port_range.as_deref(),
                "nodePortRange",
                parse_port_range,
            )?
            .unwrap_or(30_000..=32_767),
        lb_algorithm: m
            .pick(
                flags.lb_algorithm,
                file.lb_algorithm.as_deref(),
                "lbAlgorithm",
                str::parse::<Algorithm>,
            )?
            .unwrap_or_default(),
        maglev_table_size: m.maglev_table_size()?,
        map_sizes: m.map_sizes()?,
        bpf_object: flags.bpf_object.clone().or(file.bpf_object.clone()),
        log_level: m.log_level()?,
        health_address: m.address(
            flags.health_address.as_deref(),
            ("--health-address", "healthAddress"),
            file.health_address.as_deref(),
            DEFAULT_HEALTH_ADDRESS,
        )?,
        metrics_address: m.address(
            flags.metrics_address.as_deref(),
            ("--metrics-address", "metricsAddress"),
            file.metrics_address.as_deref(),
            DEFAULT_METRICS_ADDRESS,
        )?,
        verdict_socket: match flags.verdict_socket.clone().or(file.verdict_socket.clone()) {
            Some(path) if path.as_os_str() == "off" || path.as_os_str().is_empty() => None,
            Some(path) => Some(path),
            None => Some(DEFAULT_VERDICT_SOCKET.into()),
        },
        log_allowed_connections: flags.log_allowed_connections || file.log_allowed_connections == Some(true),
    };
    m.check_companions(&settings)?;
    Ok(settings)
}

fn parse_cidr(text: &str) -> Result<Ipv4Network, String> {
    text.parse()
        .map_err(|e| format!("{text:?} is not an IPv4 CIDR: {e}"))
}

/// `HOST:PORT`, or `off` / empty for "do not serve".
fn parse_address(text: &str) -> Result<Option<SocketAddr>, String> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|e| format!("{text:?} is not an address:port (or \"off\"): {e}"))
}

impl Merge<'_> {
    /// Where the file's values come from (the default when there is none).
    fn file_origin(&self) -> Origin {
        self.flags.config.clone().map_or(Origin::Default, Origin::File)
    }

    fn invalid(origin: Origin, field: &'static str, reason: impl Into<String>) -> Error {
        Error::Invalid {
            origin,
            field,
            reason: reason.into(),
        }
    }

    /// The flag's value (clap parsed it), else the file's text parsed.
    fn pick<T>(
        &self,
        flag: Option<T>,
        text: Option<&str>,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>> {
        match (flag, text) {
            (Some(value), _) => Ok(Some(value)),
            (None, Some(text)) => parse(text)
                .map(Some)
                .map_err(|reason| Self::invalid(self.file_origin(), key, reason)),
            (None, None) => Ok(None),
        }
    }

    /// A number from the flag or the file, checked against `range`.
    fn ranged<T: PartialOrd + Display + Copy>(
        &self,
        flag: Option<T>,
        flag_name: &'static str,
        file: Option<T>,
        key: &'static str,
        range: RangeInclusive<T>,
    ) -> Result<Option<T>> {
        let (value, origin) = match (flag, file) {
            (Some(v), _) => (v, Origin::Flag(flag_name)),
            (None, Some(v)) => (v, self.file_origin()),
            (None, None) => return Ok(None),
        };
        if range.contains(&value) {
            Ok(Some(value))
        } else {
            let reason = format!("{value} is not in {}..={}", range.start(), range.end());
            Err(Self::invalid(origin, key, reason))
        }
    }

    fn source(&self) -> Result<Source> {
        let (flags, file) = (self.flags, self.file);
        let manifests = flags.manifests.clone().or(file.manifests.clone());
        let kubeconfig = flags.kubeconfig.clone().or(file.kubeconfig.clone());
        match (manifests, kubeconfig) {
            (Some(_), Some(_)) => {
                let origin = if flags.manifests.is_some() && flags.kubeconfig.is_some() {
                    Origin::Flag("--manifests/--kubeconfig")
                } else {
                    self.file_origin()
                };
                Err(Self::invalid(
                    origin,
                    "manifests",
                    "set together with kubeconfig: choose standalone (manifests) or Kubernetes (kubeconfig) mode",
                ))
            }
            (Some(dir), None) => {
                if flags.api_server_host.is_some() || file.api_server_host.is_some() {
                    let origin = if flags.api_server_host.is_some() {
                        Origin::Flag("--api-server-host")
                    } else {
                        self.file_origin()
                    };
                    return Err(Self::invalid(
                        origin,
                        "apiServerHost",
                        "set in standalone (manifests) mode, which reads no API server",
                    ));
                }
                Ok(Source::Manifests(dir))
            }
            (None, kubeconfig) => Ok(Source::Kubernetes {
                kubeconfig,
                api_server: self.api_server()?,
            }),
        }
    }

    /// `apiServerHost` with its port; a port alone is an error (it would
    /// be silently ignored otherwise).
    fn api_server(&self) -> Result<Option<ApiServer>> {
        let (flags, file) = (self.flags, self.file);
        let host = self.pick(
            flags.api_server_host.clone(),
            file.api_server_host.as_deref(),
            "apiServerHost",
            parse_host,
        )?;
        let port = self.ranged(
            flags.api_server_port,
            "--api-server-port",
            file.api_server_port,
            "apiServerPort",
            1..=u16::MAX,
        )?;
        match (host, port) {
            (Some(host), port) => Ok(Some(ApiServer {
                host,
                port: port.unwrap_or(DEFAULT_API_SERVER_PORT),
            })),
            (None, Some(_)) => {
                let origin = if flags.api_server_port.is_some() {
                    Origin::Flag("--api-server-port")
                } else {
                    self.file_origin()
                };
                Err(Self::invalid(
                    origin,
                    "apiServerPort",
                    "needs apiServerHost as well",
                ))
            }
            (None, None) => Ok(None),
        }
    }

    fn maglev_table_size(&self) -> Result<u32> {
        match (self.flags.maglev_table_size, self.file.maglev_table_size) {
            (Some(size), _) => Ok(size),
            (None, Some(size)) => maglev::check_table_size(size)
                .map_err(|e| Self::invalid(self.file_origin(), "maglevTableSize", e.to_string())),
            (None, None) => Ok(maglev::DEFAULT_TABLE_SIZE),
        }
    }

    fn map_sizes(&self) -> Result<MapSizes> {
        let defaults = MapSizes::default();
        let file = self.file.map_sizes.unwrap_or_default();
        let size = |flag: Option<u32>, file: Option<u32>, key: &'static str, default: u32| {
            match flag.or(file) {
                // Flags are checked by clap: only the file can say 0.
                Some(0) => Err(Self::invalid(
                    self.file_origin(),
                    key,
                    "a map needs a capacity of at least 1",
                )),
                size => Ok(size.unwrap_or(default)),
            }
        };
        let f = self.flags;
        Ok(MapSizes {
            services: size(
                f.map_size_services,
                file.services,
                "mapSizes.services",
                defaults.services,
            )?,
            backends: size(
                f.map_size_backends,
                file.backends,
                "mapSizes.backends",
                defaults.backends,
            )?,
            affinity: size(
                f.map_size_affinity,
                file.affinity,
                "mapSizes.affinity",
                defaults.affinity,
            )?,
            nat: size(f.map_size_nat, file.nat, "mapSizes.nat", defaults.nat)?,
        })
    }

    fn log_level(&self) -> Result<String> {
        let (level, origin) = match (&self.flags.log_level, &self.file.log_level) {
            (Some(level), _) => (level.clone(), Origin::Flag("--log-level")),
            (None, Some(level)) => (level.clone(), self.file_origin()),
            (None, None) => return Ok("info".to_owned()),
        };
        match tracing_subscriber::EnvFilter::builder().parse(&level) {
            Ok(_) => Ok(level),
            Err(e) => Err(Self::invalid(origin, "logLevel", format!("{level:?}: {e}"))),
        }
    }

    fn address(
        &self,
        flag: Option<&str>,
        (flag_name, key): (&'static str, &'static str),
        file: Option<&str>,
        default: &str,
    ) -> Result<Option<SocketAddr>> {
        let (text, origin) = match (flag, file) {
            (Some(t), _) => (t, Origin::Flag(flag_name)),
            (None, Some(t)) => (t, self.file_origin()),
            (None, None) => (default, Origin::Default),
        };
        parse_address(text).map_err(|reason| Self::invalid(origin, key, reason))
    }

    /// Settings that only work together with others.
    fn check_companions(&self, s: &Settings) -> Result<()> {
        if s.masquerade {
            let missing: Vec<&str> = [
                ("nodeName", s.node_name.is_none()),
                ("device", s.device.is_none()),
                ("clusterCIDR", s.cluster_cidr.is_none()),
            ]
            .into_iter()
            .filter_map(|(key, missing)| missing.then_some(key))
            .collect();
            if !missing.is_empty() {
                let origin = if self.flags.masquerade {
                    Origin::Flag("--masquerade")
                } else {
                    self.file_origin()
                };
                let reason = format!("needs {} as well", missing.join(", "));
                return Err(Self::invalid(origin, "masquerade", reason));
            }
        }
        if s.service_cidr.is_some() && s.node_name.is_none() {
            let origin = if self.flags.service_cidr.is_some() {
                Origin::Flag("--service-cidr")
            } else {
                self.file_origin()
            };
            return Err(Self::invalid(
                origin,
                "serviceCIDR",
                "needs nodeName as well (the route is the node's)",
            ));
        }
        Ok(())
    }
}
