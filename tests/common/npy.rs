//! Minimal `.npy` reader for test fixtures: little-endian float32, C order, format 1.0/2.0/3.0.
//!
//! Use from any integration test with
//! `#[path = "common/npy.rs"] mod npy;` and `npy::read_npy_f32(path)`.

#![allow(dead_code)]

use std::path::Path;

/// Read a float32 `.npy` file: `(shape, data)`. Panics with a clear message on anything else.
pub fn read_npy_f32(path: impl AsRef<Path>) -> (Vec<usize>, Vec<f32>) {
    let path = path.as_ref();
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_npy_f32(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Parse `.npy` bytes holding float32 data.
pub fn parse_npy_f32(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic)".into());
    }
    let major = bytes[6];
    let (header_len, header_start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated .npy header".into());
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let data_start = header_start + header_len;
    if bytes.len() < data_start {
        return Err("truncated .npy header".into());
    }
    let header =
        std::str::from_utf8(&bytes[header_start..data_start]).map_err(|e| e.to_string())?;
    let field = |key: &str| -> Result<&str, String> {
        let k = header
            .find(&format!("'{key}'"))
            .ok_or(format!("header lacks '{key}': {header}"))?;
        let rest = &header[k + key.len() + 2..];
        let colon = rest.find(':').ok_or("malformed header")?;
        Ok(rest[colon + 1..].trim_start())
    };
    let descr = field("descr")?;
    if !(descr.starts_with("'<f4'") || descr.starts_with("'float32'")) {
        return Err(format!("dtype is {descr}, expected '<f4'"));
    }
    if !field("fortran_order")?.starts_with("False") {
        return Err("fortran_order arrays are not supported".into());
    }
    let shape_txt = field("shape")?;
    let close = shape_txt.find(')').ok_or("malformed shape")?;
    let shape: Vec<usize> = shape_txt[1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|e| format!("bad shape {shape_txt}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let count: usize = shape.iter().product();
    let payload = &bytes[data_start..];
    if payload.len() < count * 4 {
        return Err(format!(
            "data holds {} bytes, shape {shape:?} needs {}",
            payload.len(),
            count * 4
        ));
    }
    let data = payload[..count * 4]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((shape, data))
}
