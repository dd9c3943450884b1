//! Adapter listing and selection, and device errors as `Error` values.

use super::*;

#[test]
fn adapters_are_listed_and_selected() {
    let Some(ctx) = gpu() else { return };
    let list = dattavani_asr::testing::backend::gpu::list_adapters();
    assert!(!list.is_empty());
    for a in &list {
        assert!(
            a.max_storage_binding_size > 0 && a.max_invocations_per_workgroup > 0,
            "{a}"
        );
        println!("{a}");
    }
    // by index and by name
    let by_index = GpuContext::new(&AdapterSelector::Index(0)).unwrap();
    assert_eq!(by_index.info.name, list[0].name);
    let frag = ctx
        .info
        .name
        .chars()
        .take(4)
        .collect::<String>()
        .to_uppercase();
    assert!(GpuContext::new(&AdapterSelector::from_adapter_arg(&frag)).is_ok());
    let err = GpuContext::new(&AdapterSelector::Index(99))
        .err()
        .expect("index 99 must fail")
        .to_string();
    assert!(err.contains("out of range"), "{err}");
    let err = GpuContext::new(&AdapterSelector::Name("no-such-gpu".into()))
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("no-such-gpu"), "{err}");
    // `auto` never takes a software adapter
    let hw = list.iter().any(|a| a.device_type != "Cpu");
    match GpuContext::new(&AdapterSelector::Auto) {
        Ok(c) => assert!(hw && !c.is_software()),
        Err(e) => {
            assert!(!hw);
            assert!(e.to_string().contains("no hardware GPU adapter"), "{e}");
            assert_eq!(e.exit_code(), 4);
        }
    }
}

#[test]
fn device_errors_become_error_values_not_panics() {
    let Some(ctx) = gpu() else { return };
    let kern = kernels(&ctx);
    // shape checks on the host
    let small = ctx.storage("small", 16);
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    let mut pass = enc.begin_compute_pass(&Default::default());
    let linear = |m, n, k| Linear::new(&small, MatrixRef::f32(&small, n, k), &small, m);
    let e = kern.record(&mut pass, &linear(4, 4, 4)).unwrap_err();
    assert!(matches!(e, Error::Device(_)), "{e}");
    let e = kern.record(&mut pass, &linear(1, 1, 3)).unwrap_err();
    drop(pass);
    drop(enc);
    assert!(e.to_string().contains("multiple of 4"), "{e}");
    // a real wgpu validation error (a buffer without STORAGE usage bound as storage), caught by
    // the error scope
    let not_storage = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("map-only"),
        size: 64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let r = ctx.scoped("bad binding", || {
        kern.begin();
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            kern.record(
                &mut pass,
                &Add {
                    a: &not_storage,
                    b: &small,
                    n: 4,
                },
            )?;
        }
        kern.flush_params();
        ctx.queue.submit([enc.finish()]);
        Ok(())
    });
    let e = r.unwrap_err();
    assert!(matches!(e, Error::Device(_)), "{e}");
    assert!(!e.to_string().contains('\n'), "one line: {e}");
}
