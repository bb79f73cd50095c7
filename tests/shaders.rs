//! Every shader variant the library can compile parses and validates with naga, on any
//! machine, GPU or not.

use wgpu_quant::shaders::{ShaderFile, ShaderVariant};

/// Every variant the library can compile: the ops' kernels and the benchmark probes.
fn all_variants() -> Vec<ShaderVariant> {
    let mut v = wgpu_quant::ops::all_variants();
    v.extend(wgpu_quant::bench::peak_variants());
    v
}

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

// ---- The Rust <-> WGSL interface -------------------------------------------------------

use naga::{AddressSpace, ScalarKind, StorageAccess, TypeInner};
use wgpu_quant::shaders::{expects, imports, Bind, Leaf, Scalar, SNIPPETS};

fn parse(v: &ShaderVariant) -> naga::Module {
    let src = v.source();
    naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("{}: {}", v.tag(), e.emit_to_string(&src)))
}

/// naga's flattened view of a struct type: every scalar with its own name and offset.
fn wgsl_leaves(
    m: &naga::Module,
    ty: naga::Handle<naga::Type>,
    base: u32,
    out: &mut Vec<(String, u32, Scalar)>,
    name: &str,
) {
    match &m.types[ty].inner {
        TypeInner::Struct { members, .. } => {
            for mem in members {
                let n = mem.name.clone().unwrap_or_default();
                wgsl_leaves(m, mem.ty, base + mem.offset, out, &n);
            }
        }
        TypeInner::Scalar(s) => {
            let scalar = match (s.kind, s.width) {
                (ScalarKind::Uint, 4) => Scalar::U32,
                (ScalarKind::Sint, 4) => Scalar::I32,
                (ScalarKind::Float, 4) => Scalar::F32,
                other => panic!("uniform member {name}: unsupported scalar {other:?}"),
            };
            out.push((name.to_string(), base, scalar));
        }
        TypeInner::Vector { size, scalar } => {
            let one = m.types.get(&naga::Type {
                name: None,
                inner: TypeInner::Scalar(*scalar),
            });
            for i in 0..*size as u32 {
                let mut v = Vec::new();
                match one {
                    Some(h) => wgsl_leaves(m, h, base + i * u32::from(scalar.width), &mut v, name),
                    None => v.push((
                        name.to_string(),
                        base + i * u32::from(scalar.width),
                        match scalar.kind {
                            ScalarKind::Uint => Scalar::U32,
                            ScalarKind::Sint => Scalar::I32,
                            _ => Scalar::F32,
                        },
                    )),
                }
                out.extend(v);
            }
        }
        TypeInner::Array {
            base: elem,
            size: naga::ArraySize::Constant(n),
            stride,
        } => {
            for i in 0..n.get() {
                wgsl_leaves(m, *elem, base + i * stride, out, name);
            }
        }
        other => panic!("uniform member {name}: unsupported type {other:?}"),
    }
}

/// Group 0's bindings as naga sees them, in binding order, and the params block (the
/// uniform at binding 0; a kernel may bind an operand as a uniform block too).
fn reflect(m: &naga::Module) -> (Vec<(u32, Bind)>, Option<naga::Handle<naga::Type>>) {
    let mut binds = Vec::new();
    let mut uniform = None;
    for (_, g) in m.global_variables.iter() {
        let Some(rb) = &g.binding else { continue };
        assert_eq!(rb.group, 0, "{:?} is not in group 0", g.name);
        let kind = match g.space {
            AddressSpace::Uniform => {
                if rb.binding == 0 {
                    uniform = Some(g.ty);
                }
                Bind::Uniform
            }
            AddressSpace::Storage { access } if access.contains(StorageAccess::STORE) => {
                Bind::ReadWrite
            }
            AddressSpace::Storage { .. } => Bind::Read,
            AddressSpace::Handle => Bind::Texture,
            other => panic!("{:?}: unexpected address space {other:?}", g.name),
        };
        binds.push((rb.binding, kind));
    }
    binds.sort_by_key(|b| b.0);
    (binds, uniform)
}

/// Compares the Rust params layout with the WGSL one: same scalars at the same offsets,
/// same names (padding on one side is padding on the other).
fn compare_uniform(
    file: &str,
    rust: &[Leaf],
    wgsl: &[(String, u32, Scalar)],
) -> Result<(), String> {
    if rust.len() != wgsl.len() {
        return Err(format!(
            "{file}: Rust params have {} scalars, WGSL {}: {rust:?} vs {wgsl:?}",
            rust.len(),
            wgsl.len()
        ));
    }
    for (r, (wn, wo, ws)) in rust.iter().zip(wgsl) {
        let pad = (r.name.starts_with('_'), wn.starts_with('_'));
        if r.offset as u32 != *wo || r.scalar != *ws || pad.0 != pad.1 || (!pad.0 && r.name != wn) {
            return Err(format!(
                "{file}: Rust `{}` ({:?} at byte {}) against WGSL `{wn}` ({ws:?} at byte {wo})",
                r.name, r.scalar, r.offset
            ));
        }
    }
    Ok(())
}

fn rust_layouts() -> Vec<(ShaderFile, Vec<Leaf>)> {
    let mut v = wgpu_quant::ops::uniform_layouts();
    v.extend(wgpu_quant::bench::peak_uniform_layouts());
    v
}

/// Every variant's bind group layout (from the registry table) and params struct (from
/// the op's `#[repr(C)]` struct) agree with naga's reflection of the composed shader,
/// and every variant defines exactly the constants its table entry lists.
#[test]
fn rust_and_wgsl_interfaces_agree() {
    let layouts = rust_layouts();
    let mut failures = Vec::new();
    // Every registry entry (a file may have several binding layouts), not only `ALL`.
    for file in wgpu_quant::shaders::SPECS.iter().map(|s| s.file) {
        let n = layouts.iter().filter(|(f, _)| *f == file).count();
        if n != 1 {
            failures.push(format!(
                "{}: {n} Rust params layouts (want 1)",
                file.file_name()
            ));
        }
    }
    for v in all_variants() {
        let spec = v.file.spec();
        let name = format!("{} [{}]", spec.path, v.tag());
        let m = parse(&v);
        let (binds, uniform) = reflect(&m);
        let want: Vec<(u32, Bind)> = spec
            .bindings
            .iter()
            .enumerate()
            .map(|(i, b)| (i as u32, *b))
            .collect();
        if binds != want {
            failures.push(format!(
                "{name}: bindings {binds:?}, the table says {want:?}"
            ));
        }
        let mut wl = Vec::new();
        if let Some(ty) = uniform {
            wgsl_leaves(&m, ty, 0, &mut wl, "");
        }
        if let Some((_, rust)) = layouts.iter().find(|(f, _)| *f == v.file) {
            if let Err(e) = compare_uniform(&name, rust, &wl) {
                failures.push(e);
            }
        }
        let mut defs: Vec<&str> = v
            .defs
            .iter()
            .filter(|d| !matches!(d.1, wgpu_quant::shaders::Def::Code(_)))
            .map(|d| d.0)
            .collect();
        let mut consts: Vec<&str> = spec.constants.to_vec();
        defs.sort_unstable();
        consts.sort_unstable();
        if defs != consts {
            failures.push(format!(
                "{name}: defines {defs:?}, the table lists {consts:?}"
            ));
        }
    }
    let shown: Vec<&String> = failures.iter().take(20).collect();
    assert!(
        failures.is_empty(),
        "{} interface mismatches (first 20):\n{shown:#?}",
        failures.len()
    );
}

/// The identifiers of WGSL code outside comments.
fn idents(src: &str) -> Vec<String> {
    let code: String = src
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_dot = false;
    let mut last = ' ';
    for c in code.chars().chain(std::iter::once(' ')) {
        if c.is_alphanumeric() || c == '_' {
            if cur.is_empty() {
                prev_dot = last == '.';
            }
            cur.push(c);
        } else if !cur.is_empty() {
            // Member accesses (`.x`) are not names of globals.
            if !prev_dot {
                out.push(cur.clone());
            }
            cur.clear();
        }
        if !c.is_whitespace() {
            last = c;
        }
    }
    out
}

/// Snippets declare what they take from the kernel that imports them (`// #expects`):
/// every importer has each expected global and params field, and a snippet uses no other
/// global or params field of its importer.
#[test]
fn snippets_declare_what_they_use() {
    let mut failures = Vec::new();
    for v in all_variants() {
        let spec = v.file.spec();
        let m = parse(&v);
        let globals: Vec<String> = m
            .global_variables
            .iter()
            .filter_map(|(_, g)| g.name.clone())
            .collect();
        let p_fields: Vec<String> = m
            .global_variables
            .iter()
            .find(|(_, g)| g.name.as_deref() == Some("p"))
            .map(|(_, g)| match &m.types[g.ty].inner {
                TypeInner::Struct { members, .. } => {
                    members.iter().filter_map(|x| x.name.clone()).collect()
                }
                _ => Vec::new(),
            })
            .unwrap_or_default();
        // The snippets this file pulls in, transitively.
        let mut todo: Vec<&str> = imports(spec.source);
        let mut seen = Vec::new();
        while let Some(path) = todo.pop() {
            if seen.contains(&path) {
                continue;
            }
            seen.push(path);
            let Some((_, src)) = SNIPPETS.iter().find(|(p, _)| *p == path) else {
                failures.push(format!("{}: imports unknown {path}", spec.path));
                continue;
            };
            todo.extend(imports(src));
            let want = expects(src);
            for e in &want {
                let ok = match e.split_once('.') {
                    Some(("p", f)) => p_fields.iter().any(|x| x == f),
                    Some(_) => false,
                    None => globals.iter().any(|g| g == e),
                };
                if !ok {
                    failures.push(format!(
                        "{}: {path} expects `{e}`, which the kernel lacks",
                        spec.path
                    ));
                }
            }
            // Uses of the importer's globals and params fields that are not declared.
            let code: String = src
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            // Names the snippet declares itself (parameters, members and typed or untyped
            // `let`/`var`/`const`) shadow the kernel's; a snippet that shadows a global it
            // also uses is beyond this check (naga would not notice either).
            let ids = idents(src);
            let local = |g: &str| {
                code.contains(&format!("{g}:"))
                    || code.contains(&format!("{g} :"))
                    || ["let ", "var ", "const "].iter().any(|k| {
                        code.contains(&format!("{k}{g} "))
                            || code.contains(&format!("{k}{g}:"))
                            || code.contains(&format!("{k}{g}="))
                    })
            };
            for g in &globals {
                if g == "p" || want.contains(&g.as_str()) || local(g) {
                    continue;
                }
                if ids.iter().any(|i| i == g) {
                    failures.push(format!(
                        "{}: {path} uses the kernel's `{g}` without `// #expects {g}`",
                        spec.path
                    ));
                }
            }
            for f in &p_fields {
                let dotted = format!("p.{f}");
                let used = code.match_indices(&dotted).any(|(i, _)| {
                    let before = code[..i].chars().last();
                    let after = code[i + dotted.len()..].chars().next();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
                        && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if used && !want.contains(&dotted.as_str()) {
                    failures.push(format!(
                        "{}: {path} uses `{dotted}` without declaring it",
                        spec.path
                    ));
                }
            }
        }
    }
    failures.sort();
    failures.dedup();
    assert!(
        failures.is_empty(),
        "{} undeclared snippet dependencies:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
