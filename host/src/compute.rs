//! Where training and inference run: burn's `flex` CPU backend, or one of its CubeCL GPU
//! backends when the crate is built with their feature (host/gpu/README.md).
//!
//! | `--device` | backend                              | feature | needs at run time            |
//! |------------|--------------------------------------|---------|------------------------------|
//! | `cpu`      | flex (pure Rust, rayon)              | —       | —                            |
//! | `wgpu`     | CubeCL wgpu: Vulkan on Linux         | `wgpu`  | a Vulkan driver (ICD)        |
//! | `cuda`     | CubeCL CUDA, kernels through NVRTC   | `cuda`  | the NVIDIA driver, NVRTC     |
//! | `cubecl-cpu` | CubeCL CPU, kernels JIT-compiled by LLVM | `cubecl-cpu` | —                   |
//!
//! `gpu` (the earlier name) means `cuda` when it is compiled in, else `wgpu`. `cubecl-cpu` is
//! there to be measured against flex (host/gpu/README.md: 48x slower on the eval forward pass,
//! so `cpu` stays flex).

use anyhow::{bail, ensure, Result};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// The compute device of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeDevice {
    #[default]
    Cpu,
    /// burn's wgpu backend (`gpu` in configurations written before CUDA existed).
    #[serde(alias = "gpu")]
    Wgpu,
    Cuda,
    /// burn's CubeCL CPU backend (measured against flex; `cpu` stays flex).
    #[serde(rename = "cubecl-cpu")]
    CubeclCpu,
}

impl std::str::FromStr for ComputeDevice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(ComputeDevice::Cpu),
            "wgpu" => Ok(ComputeDevice::Wgpu),
            "cuda" => Ok(ComputeDevice::Cuda),
            "cubecl-cpu" => Ok(ComputeDevice::CubeclCpu),
            "gpu" if cfg!(feature = "cuda") => Ok(ComputeDevice::Cuda),
            "gpu" => Ok(ComputeDevice::Wgpu),
            _ => bail!("unknown device {s:?} (expected cpu, wgpu, cuda or cubecl-cpu)"),
        }
    }
}

impl std::fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ComputeDevice::Cpu => "cpu",
            ComputeDevice::Wgpu => "wgpu",
            ComputeDevice::Cuda => "cuda",
            ComputeDevice::CubeclCpu => "cubecl-cpu",
        })
    }
}

impl ComputeDevice {
    /// The burn device (without autodiff), checked to work: a machine without a usable
    /// adapter or driver fails here with one line, before any work. The CPU is named
    /// explicitly: with a GPU backend compiled in, burn's default device is that backend.
    pub fn open(self) -> Result<Device> {
        let device = match self {
            ComputeDevice::Cpu => return Ok(Device::flex()),
            ComputeDevice::Wgpu => wgpu_device()?,
            ComputeDevice::Cuda => cuda_device()?,
            ComputeDevice::CubeclCpu => cubecl_cpu_device()?,
        };
        // The GPU devices are lazy: touch this one once. A missing driver panics inside burn
        // (on its device thread): keep that quiet and report its first line instead.
        let probe = device.clone();
        match quietly(move || Tensor::<1>::ones([4], &probe).sum().into_scalar::<f32>()) {
            Ok(v) => {
                ensure!(v == 4.0, "--device {self}: a sum of four ones gave {v}");
                Ok(device)
            }
            Err(why) => bail!(
                "--device {self}: the device does not work here: {why} ({})",
                match self {
                    ComputeDevice::Cuda => "is the NVIDIA driver installed? see `nvidia-smi`",
                    ComputeDevice::CubeclCpu => "CubeCL's CPU runtime failed to start",
                    _ => "is a Vulkan driver installed? see `vulkaninfo --summary`",
                }
            ),
        }
    }

    /// Whether this build can open the device at all.
    pub fn compiled(self) -> bool {
        match self {
            ComputeDevice::Cpu => true,
            ComputeDevice::Wgpu => cfg!(feature = "wgpu"),
            ComputeDevice::Cuda => cfg!(feature = "cuda"),
            ComputeDevice::CubeclCpu => cfg!(feature = "cubecl-cpu"),
        }
    }
}

/// Run `f`, turning a panic (in it, or on a thread it waits for) into the first panic's
/// message, shortened to its first sentence, without printing it.
fn quietly<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> std::result::Result<T, String> {
    static FIRST: Mutex<Option<String>> = Mutex::new(None);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let p = info.payload();
        let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
        let mut first = FIRST.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(msg.unwrap_or_else(|| "a panic".into()));
    }));
    let r = std::panic::catch_unwind(f);
    std::panic::set_hook(previous);
    let first = FIRST.lock().unwrap_or_else(|e| e.into_inner()).take();
    r.map_err(|_| {
        let msg = first.unwrap_or_else(|| "a panic".into());
        let end = msg.find(" - ").or_else(|| msg.find(". ")).unwrap_or(msg.len()).min(200);
        msg[..msg.floor_char_boundary(end)].to_string()
    })
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device> {
    // wgpu picks the high-power adapter (override: CUBECL_WGPU_DEFAULT_DEVICE).
    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device> {
    bail!("--device wgpu: this avsc-host was built without it (build with `--features wgpu`)")
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device> {
    Ok(Device::cuda(0))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device> {
    bail!("--device cuda: this avsc-host was built without it (see host/gpu/README.md: `--features cuda`)")
}

#[cfg(feature = "cubecl-cpu")]
fn cubecl_cpu_device() -> Result<Device> {
    Ok(Device::cpu())
}

#[cfg(not(feature = "cubecl-cpu"))]
fn cubecl_cpu_device() -> Result<Device> {
    bail!("--device cubecl-cpu: this avsc-host was built without it (build with `--features cubecl-cpu`)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_name_their_feature() {
        for (s, d) in [
            ("cpu", ComputeDevice::Cpu),
            ("wgpu", ComputeDevice::Wgpu),
            ("cuda", ComputeDevice::Cuda),
            ("cubecl-cpu", ComputeDevice::CubeclCpu),
        ] {
            assert_eq!(s.parse::<ComputeDevice>().unwrap(), d);
            assert_eq!(d.to_string(), s);
        }
        let gpu = "gpu".parse::<ComputeDevice>().unwrap();
        assert_eq!(gpu, if cfg!(feature = "cuda") { ComputeDevice::Cuda } else { ComputeDevice::Wgpu });
        assert!("tpu".parse::<ComputeDevice>().is_err());
        assert!(ComputeDevice::Cpu.open().is_ok());
        for (d, feature) in
            [(ComputeDevice::Wgpu, "wgpu"), (ComputeDevice::Cuda, "cuda"), (ComputeDevice::CubeclCpu, "cubecl-cpu")]
        {
            if !d.compiled() {
                let err = d.open().err().unwrap().to_string();
                assert!(err.contains(&format!("--features {feature}")), "{err}");
            }
        }
    }

    #[test]
    fn a_panicking_probe_becomes_its_first_sentence() {
        let r = quietly(|| {
            std::thread::spawn(|| panic!("Unable to load \"cuda\" - searched for [long list]")).join().unwrap()
        });
        assert_eq!(r.unwrap_err(), "Unable to load \"cuda\"");
        assert_eq!(quietly(|| 4), Ok(4));
    }

    #[test]
    fn configurations_written_with_gpu_still_read() {
        #[derive(Deserialize)]
        struct T {
            device: ComputeDevice,
        }
        let t: T = toml::from_str("device = \"gpu\"").unwrap();
        assert_eq!(t.device, ComputeDevice::Wgpu);
        let t: T = toml::from_str("device = \"cuda\"").unwrap();
        assert_eq!(t.device, ComputeDevice::Cuda);
    }
}
