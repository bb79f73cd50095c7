//! Every shader variant the library can compile parses and validates with naga, on any
//! machine, GPU or not.

use wgpu_quant::shaders::{all_variants, ShaderFile};

#[test]
fn every_variant_validates_with_naga() {
    let variants = all_variants();
    // Every file is exercised by at least one variant.
    for file in ShaderFile::ALL {
        assert!(
            variants.iter().any(|v| v.file == file),
            "no variant of {} is listed in all_variants()",
            file.file_name()
        );
    }
    let mut failures = Vec::new();
    for v in &variants {
        let src = v.source();
        let module = match naga::front::wgsl::parse_str(&src) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!(
                    "{} [{}]: parse error:\n{}",
                    v.file.file_name(),
                    v.tag(),
                    e.emit_to_string(&src)
                ));
                continue;
            }
        };
        let mut validator = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        );
        if let Err(e) = validator.validate(&module) {
            failures.push(format!(
                "{} [{}]: validation error:\n{}",
                v.file.file_name(),
                v.tag(),
                e.emit_to_string(&src)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} shader variants failed:\n{}",
        failures.len(),
        variants.len(),
        failures.join("\n")
    );
    eprintln!("{} shader variants validated", variants.len());
}

#[test]
fn registry_sources_match_files_on_disk() {
    // The embedded copies are the files in shaders/ (catches a stale include path).
    for file in ShaderFile::ALL {
        let on_disk = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("shaders")
                .join(file.file_name()),
        )
        .expect("shader file exists");
        let v = all_variants().into_iter().find(|v| v.file == file).unwrap();
        assert!(
            v.source().ends_with(&on_disk),
            "{} embedded source differs from the file",
            file.file_name()
        );
    }
}
