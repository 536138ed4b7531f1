//! In-memory [`LbMaps`] for unit tests: no root, no kernel, same semantics,
//! plus the option to fail the n-th write (to test retries).

use std::collections::BTreeMap;

use weir_common::lb::{Affinity4Key, Affinity4Value, MaglevTable};
use weir_common::{Backend4, BackendId, Service4Key, Service4Value};

use super::{Error, LbMaps, Result};

/// In-memory load-balancer maps.
#[derive(Debug, Default, Clone)]
pub struct FakeLbMaps {
    /// Service map contents.
    pub services: BTreeMap<Service4Key, Service4Value>,
    /// Backend map contents.
    pub backends: BTreeMap<BackendId, Backend4>,
    /// Maglev tables.
    pub maglev: BTreeMap<Service4Key, MaglevTable>,
    /// Session-affinity map contents (the datapath's writes, in tests by hand).
    pub affinity: BTreeMap<Affinity4Key, Affinity4Value>,
    /// When `Some(n)`, the write after `n` more successful writes fails once.
    pub fail_after_writes: Option<usize>,
    /// Every successful write, in order, e.g. `put_service` / `delete_backend`.
    pub log: Vec<&'static str>,
}

impl FakeLbMaps {
    fn write(&mut self, op: &'static str) -> Result<()> {
        match self.fail_after_writes {
            Some(0) => {
                self.fail_after_writes = None;
                Err(Error::Injected(op))
            }
            Some(n) => {
                self.fail_after_writes = Some(n - 1);
                self.log.push(op);
                Ok(())
            }
            None => {
                self.log.push(op);
                Ok(())
            }
        }
    }
}

impl LbMaps for FakeLbMaps {
    fn services(&self) -> Result<Vec<(Service4Key, Service4Value)>> {
        Ok(self.services.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn backends(&self) -> Result<Vec<(BackendId, Backend4)>> {
        Ok(self.backends.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn put_service(&mut self, key: &Service4Key, value: &Service4Value) -> Result<()> {
        self.write("put_service")?;
        self.services.insert(*key, *value);
        Ok(())
    }

    fn delete_service(&mut self, key: &Service4Key) -> Result<()> {
        self.write("delete_service")?;
        self.services.remove(key);
        Ok(())
    }

    fn put_backend(&mut self, id: BackendId, backend: &Backend4) -> Result<()> {
        self.write("put_backend")?;
        self.backends.insert(id, *backend);
        Ok(())
    }

    fn delete_backend(&mut self, id: BackendId) -> Result<()> {
        self.write("delete_backend")?;
        self.backends.remove(&id);
        Ok(())
    }

    fn maglev_tables(&self) -> Result<Vec<(Service4Key, MaglevTable)>> {
        Ok(self.maglev.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn put_maglev(&mut self, key: &Service4Key, table: &MaglevTable) -> Result<()> {
        self.write("put_maglev")?;
        self.maglev.insert(*key, *table);
        Ok(())
    }

    fn delete_maglev(&mut self, key: &Service4Key) -> Result<()> {
        self.write("delete_maglev")?;
        self.maglev.remove(key);
        Ok(())
    }

    fn affinities(&self) -> Result<Vec<(Affinity4Key, Affinity4Value)>> {
        Ok(self.affinity.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn delete_affinity(&mut self, key: &Affinity4Key) -> Result<()> {
        self.write("delete_affinity")?;
        self.affinity.remove(key);
        Ok(())
    }
}
