//! The bind-group cache (named so that it does not collide with pooling): every op
//! recording looks its bind group up by (kernel, parameter bytes, bound resources) and
//! makes one only on a miss, so an engine that records the same ops on the same tensors
//! every frame creates no bind groups, uniform buffers or intermediates after the first
//! frame ([`crate::Context::stats`] counts them).
//!
//! The pool is bounded ([`DEFAULT_CAPACITY`] entries, least recently used evicted first;
//! [`crate::Context::set_pool_capacity`]). A pooled bind group holds references to the
//! buffers it binds, so the pool releases them as soon as their tensors are gone: when
//! the last clone of a tensor made on a context ([`crate::Tensor::zeros`],
//! [`crate::Tensor::from_slice`] and the ops' outputs) is dropped, every pooled bind
//! group that binds its buffer is dropped too, and the GPU memory is freed. Buffers the
//! caller owns ([`crate::Tensor::from_buffer`]) stay referenced until evicted or
//! [`crate::Context::clear_pool`].

use std::collections::HashMap;
use std::sync::{Mutex, Weak};

/// Bind groups a context keeps by default.
pub const DEFAULT_CAPACITY: usize = 256;

/// One bound resource, by identity: a buffer window or a texture view.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ResKey {
    Buffer(wgpu::Buffer, u64, u64),
    View(wgpu::TextureView),
}

/// What a bind group is made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct BindKey {
    pub pipeline: wgpu::ComputePipeline,
    pub params: Vec<u8>,
    pub resources: Vec<ResKey>,
}

#[derive(Debug)]
pub(crate) struct BindCache {
    map: HashMap<BindKey, (wgpu::BindGroup, u64)>,
    tick: u64,
    capacity: usize,
}

impl BindCache {
    pub fn new(capacity: usize) -> Self {
        BindCache {
            map: HashMap::new(),
            tick: 0,
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Drops every entry that binds `buffer`.
    pub fn purge(&mut self, buffer: &wgpu::Buffer) {
        self.map.retain(|k, _| {
            !k.resources
                .iter()
                .any(|r| matches!(r, ResKey::Buffer(b, ..) if b == buffer))
        });
    }

    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        self.evict();
    }

    pub fn get(&mut self, key: &BindKey) -> Option<wgpu::BindGroup> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(key).map(|(bg, used)| {
            *used = tick;
            bg.clone()
        })
    }

    pub fn insert(&mut self, key: BindKey, bg: wgpu::BindGroup) {
        if self.capacity == 0 {
            return;
        }
        self.tick += 1;
        self.map.insert(key, (bg, self.tick));
        self.evict();
    }

    /// Drops the least recently used quarter once the pool is over capacity (amortized:
    /// one sort per capacity/4 insertions).
    fn evict(&mut self) {
        if self.map.len() <= self.capacity {
            return;
        }
        if self.capacity == 0 {
            self.map.clear();
            return;
        }
        let keep = self.capacity - self.capacity / 4;
        let mut ticks: Vec<u64> = self.map.values().map(|(_, t)| *t).collect();
        ticks.sort_unstable();
        let cut = ticks[self.map.len() - keep];
        self.map.retain(|_, (_, t)| *t >= cut);
    }
}

/// Purges a tensor's buffer from its context's pool when the last clone of the tensor is
/// dropped (shared by the clones through an `Arc`).
pub(crate) struct Release {
    buffer: wgpu::Buffer,
    pool: Weak<Mutex<BindCache>>,
}

impl Release {
    pub fn new(buffer: wgpu::Buffer, pool: Weak<Mutex<BindCache>>) -> Self {
        Release { buffer, pool }
    }
}

impl std::fmt::Debug for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Release")
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            // A poisoned pool still holds bind groups: purge them all the same.
            let mut cache = pool.lock().unwrap_or_else(|e| e.into_inner());
            cache.purge(&self.buffer);
        }
    }
}
