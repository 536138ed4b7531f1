//! Privileged integration tests of weir: real `weir-cni`, real `weir-agent`, real
//! eBPF, inside throwaway network namespaces.
//!
//! Every test is `#[ignore]`d so a plain `cargo test` (no root, no BPF) passes;
//! `cargo xtask test` runs them as root with `--ignored`. Each test builds its
//! own [`weir_tests::Node`], so they run in parallel, and each one's `Drop`
//! removes it — after a failure too, printing the agent's log first.

mod agent_link;
mod apiserver;
mod apply;
mod cleanup;
mod cli_agent;
mod cli_bpf;
mod cli_trace;
mod clusterip;
mod cni;
mod cni_spec;
mod common;
mod crossnode;
mod draining;
mod kube_proxy_free;
mod kubernetes;
mod map_dump;
mod metrics;
mod migrate;
mod netpol;
mod packet;
mod policy_packet;
mod restart;
mod services;
mod tc_nat;
