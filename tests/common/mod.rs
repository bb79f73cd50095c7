//! Shared test setup: one context per test binary, on the adapter the environment selects
//! (WGPU_QUANT_BACKEND / WGPU_QUANT_ADAPTER). No adapter is a hard failure with a hint,
//! never a silent skip.

#![allow(dead_code)]

use std::sync::OnceLock;

use wgpu_quant::context::Overrides;
use wgpu_quant::{Context, RequestOptions};

pub fn ctx() -> &'static Context {
    static CTX: OnceLock<Context> = OnceLock::new();
    CTX.get_or_init(
        || match Context::request_blocking(&RequestOptions::default()) {
            Ok(ctx) => {
                eprintln!(
                    "testing on: {} ({:?}, {})",
                    ctx.capabilities().adapter.name,
                    ctx.capabilities().adapter.backend,
                    ctx.capabilities().adapter.driver_info
                );
                ctx
            }
            Err(e) => panic!(
                "\n\nwgpu-quant tests need a GPU adapter and found none:\n  {e}\n\
             On a machine without a GPU: apt-get install -y mesa-vulkan-drivers (lavapipe).\n\n"
            ),
        },
    )
}

/// A context on the test adapter with `overrides` applied at device creation.
pub fn context_with(overrides: Overrides) -> Context {
    let adapter = test_adapter();
    pollster::block_on(Context::from_adapter_with(&adapter, &overrides)).expect("device")
}

/// The adapter the shared context runs on.
pub fn test_adapter() -> wgpu::Adapter {
    let caps = ctx().capabilities();
    pollster::block_on(Context::adapters(wgpu::Backends::from(
        caps.adapter.backend,
    )))
    .into_iter()
    .find(|a| a.get_info().name == caps.adapter.name)
    .expect("the test adapter is listed")
}

pub fn small_bindings(bytes: u64) -> Context {
    context_with(Overrides {
        max_storage_buffer_binding_size: Some(bytes),
        ..Default::default()
    })
}
pub mod float;

/// A fuzzer's time budget in seconds (`WGPU_QUANT_FUZZ_SECS`, 0: the short CI smoke) and
/// seed (`WGPU_QUANT_FUZZ_SEED`, default 1).
pub fn fuzz_env() -> (u64, u64) {
    let var = |k: &str, default: u64| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    (
        var("WGPU_QUANT_FUZZ_SECS", 0),
        var("WGPU_QUANT_FUZZ_SEED", 1),
    )
}
