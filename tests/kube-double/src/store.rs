//! In-memory storage: objects by group-resource, one global resourceVersion counter, and a
//! bounded history of changes that watches replay from.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::registry::Registry;
use crate::util::meta_str;

pub const CRD_GR: &str = "customresourcedefinitions.apiextensions.k8s.io";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Change {
    pub rv: u64,
    pub gr: String,
    pub typ: EventType,
    pub object: Arc<Value>,
    pub prev: Option<Arc<Value>>,
}

pub struct Store {
    rv: u64,
    objects: HashMap<String, BTreeMap<(String, String), Arc<Value>>>,
    history: VecDeque<Change>,
    history_cap: usize,
    /// The newest resourceVersion no longer in history: watches from before it get 410 Gone.
    compacted: u64,
    pub registry: Registry,
    notify: watch::Sender<u64>,
}

pub fn key_of(obj: &Value) -> (String, String) {
    (
        meta_str(obj, "namespace").to_string(),
        meta_str(obj, "name").to_string(),
    )
}

impl Store {
    pub fn new(history_cap: usize) -> Self {
        let (notify, _) = watch::channel(0);
        Store {
            rv: 0,
            objects: HashMap::new(),
            history: VecDeque::new(),
            history_cap: history_cap.max(16),
            compacted: 0,
            registry: Registry::new(&[]),
            notify,
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    pub fn rv(&self) -> u64 {
        self.rv
    }

    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    pub fn get(&self, gr: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(gr)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of a group-resource, in one namespace or all, ordered by namespace and name.
    pub fn list(&self, gr: &str, ns: Option<&str>) -> Vec<Arc<Value>> {
        let Some(map) = self.objects.get(gr) else {
            return vec![];
        };
        match ns {
            Some(ns) => map
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
            None => map.values().cloned().collect(),
        }
    }

    pub fn group_resources(&self) -> Vec<String> {
        self.objects.keys().cloned().collect()
    }

    fn record(&mut self, change: Change) {
        self.history.push_back(change);
        while self.history.len() > self.history_cap {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        self.notify.send_replace(self.rv);
    }

    /// Stores `obj` under a fresh resourceVersion (ADDED or MODIFIED) and returns it.
    pub fn commit(&mut self, gr: &str, mut obj: Value) -> Arc<Value> {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let obj = Arc::new(obj);
        let prev = self
            .objects
            .entry(gr.to_string())
            .or_default()
            .insert(key_of(&obj), obj.clone());
        let typ = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(Change {
            rv: self.rv,
            gr: gr.to_string(),
            typ,
            object: obj.clone(),
            prev,
        });
        if gr == CRD_GR {
            self.rebuild_registry();
        }
        obj
    }

    /// Removes an object; its DELETED event carries a fresh resourceVersion, as the apiserver's does.
    pub fn remove(&mut self, gr: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        let prev = self
            .objects
            .get_mut(gr)?
            .remove(&(ns.to_string(), name.to_string()))?;
        self.rv += 1;
        let mut gone = (*prev).clone();
        gone["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let gone = Arc::new(gone);
        self.record(Change {
            rv: self.rv,
            gr: gr.to_string(),
            typ: EventType::Deleted,
            object: gone.clone(),
            prev: Some(prev),
        });
        if gr == CRD_GR {
            self.rebuild_registry();
        }
        Some(gone)
    }

    /// Changes after `rv`, or Err(compacted) when history no longer reaches back that far.
    pub fn changes_after(&self, rv: u64) -> Result<Vec<Change>, u64> {
        if rv < self.compacted {
            return Err(self.compacted);
        }
        let start = self.history.partition_point(|c| c.rv <= rv);
        Ok(self.history.range(start..).cloned().collect())
    }

    /// Discovery serves a CRD's group once the CRD is Established.
    fn rebuild_registry(&mut self) {
        let established: Vec<Value> = self
            .list(CRD_GR, None)
            .iter()
            .filter(|crd| is_established(crd))
            .map(|crd| (**crd).clone())
            .collect();
        self.registry = Registry::new(&established);
    }
}

pub fn is_established(crd: &Value) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}})
    }

    #[test]
    fn history_replays_changes_after_a_version_and_expires_old_ones() {
        let mut s = Store::new(16);
        for i in 0..20 {
            s.commit("configmaps", cm(&format!("c{i}")));
        }
        assert_eq!(s.rv(), 20);
        assert_eq!(s.changes_after(18).unwrap().len(), 2);
        assert_eq!(s.changes_after(2).unwrap_err(), 4);
        s.remove("configmaps", "default", "c0");
        let last = s.changes_after(20).unwrap();
        assert_eq!(last[0].typ, EventType::Deleted);
        assert_eq!(last[0].object["metadata"]["resourceVersion"], "21");
    }

    #[test]
    fn lists_one_namespace_in_name_order() {
        let mut s = Store::new(100);
        s.commit("configmaps", cm("b"));
        s.commit("configmaps", cm("a"));
        let mut other = cm("z");
        other["metadata"]["namespace"] = json!("other");
        s.commit("configmaps", other);
        let names: Vec<String> = s
            .list("configmaps", Some("default"))
            .iter()
            .map(|o| meta_str(o, "name").to_string())
            .collect();
        assert_eq!(names, vec!["a", "b"]);
        assert_eq!(s.list("configmaps", None).len(), 3);
    }
}
