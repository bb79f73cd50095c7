//! Shared test setup: one context per test binary, on the adapter the environment selects
//! (WGPU_QUANT_BACKEND / WGPU_QUANT_ADAPTER). No adapter is a hard failure with a hint,
//! never a silent skip.

#![allow(dead_code)]

use std::sync::OnceLock;

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
