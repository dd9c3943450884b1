//! The weights of the package's `silero_vad_16k_op15.onnx`, read straight from the ONNX protobuf.
//!
//! Why this exists: silero-vad 6.2.3's `silero_vad_16k.safetensors` holds different weights from
//! every ONNX/JIT model in the same wheel (conv4.weight differs by up to 18 on values up to 37),
//! while `silero_vad.onnx` is what the package, faster-whisper and onnxruntime users run. The op15
//! export keeps the 16 kHz model's weights as plain graph initializers with PyTorch names and
//! layouts, so reading those 15 tensors gives us the reference model without any ONNX runtime.
//!
//! Only the protobuf fields on that path are decoded (ModelProto.graph = 7,
//! GraphProto.initializer = 5, TensorProto: dims = 1, data_type = 2, float_data = 4, name = 8,
//! raw_data = 9); everything else is skipped by wire type. A protobuf crate would need the ONNX
//! schema compiled in for the same 15 tensors.

use std::collections::HashMap;
use std::path::Path;

use super::model::VadWeights;
use crate::error::{Error, Result};

/// ONNX initializer name for each of our tensor names ([`super::model::TENSORS`]).
fn onnx_name(name: &str) -> String {
    let (module, param) = name.split_once('.').expect("tensor names are module.param");
    let module = match module {
        "stft_conv" => return "model.stft.forward_basis_buffer".to_string(),
        "conv1" => "encoder.0.reparam_conv",
        "conv2" => "encoder.1.reparam_conv",
        "conv3" => "encoder.2.reparam_conv",
        "conv4" => "encoder.3.reparam_conv",
        "lstm_cell" => "decoder.rnn",
        "final_conv" => "decoder.decoder.2",
        other => other,
    };
    format!("model.{module}.{param}")
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
    Fixed64,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len())?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Some(s)
    }

    /// The next (field number, value), `None` at the end; `Err` on malformed input.
    fn next(&mut self) -> std::result::Result<Option<(u64, Field<'a>)>, ()> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint().ok_or(())?;
        let field = match key & 7 {
            0 => Field::Varint(self.varint().ok_or(())?),
            1 => {
                self.take(8).ok_or(())?;
                Field::Fixed64
            }
            2 => {
                let n = self.varint().ok_or(())? as usize;
                Field::Bytes(self.take(n).ok_or(())?)
            }
            5 => {
                let b = self.take(4).ok_or(())?;
                Field::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            _ => return Err(()),
        };
        Ok(Some((key >> 3, field)))
    }
}

/// One float tensor: shape and values.
type Tensor = (Vec<usize>, Vec<f32>);

fn parse_tensor(buf: &[u8]) -> std::result::Result<(String, Option<Tensor>), ()> {
    let (mut name, mut dims, mut dtype) = (String::new(), Vec::new(), 0u64);
    let (mut raw, mut floats): (Option<&[u8]>, Vec<f32>) = (None, Vec::new());
    let mut r = Reader::new(buf);
    while let Some((num, field)) = r.next()? {
        match (num, field) {
            (1, Field::Varint(d)) => dims.push(d as usize),
            (1, Field::Bytes(packed)) => {
                let mut p = Reader::new(packed);
                while p.pos < packed.len() {
                    dims.push(p.varint().ok_or(())? as usize);
                }
            }
            (2, Field::Varint(t)) => dtype = t,
            (4, Field::Fixed32(v)) => floats.push(f32::from_bits(v)),
            (4, Field::Bytes(packed)) => floats.extend(
                packed
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            (8, Field::Bytes(n)) => name = String::from_utf8_lossy(n).into_owned(),
            (9, Field::Bytes(b)) => raw = Some(b),
            _ => {}
        }
    }
    // data_type 1 is FLOAT; other initializers (shape constants) are not ours.
    if dtype != 1 {
        return Ok((name, None));
    }
    if let Some(raw) = raw {
        floats = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
    }
    Ok((name, Some((dims, floats))))
}

/// Every float initializer of the model's main graph, by name.
fn initializers(bytes: &[u8]) -> std::result::Result<HashMap<String, Tensor>, ()> {
    let mut out = HashMap::new();
    let mut model = Reader::new(bytes);
    while let Some((num, field)) = model.next()? {
        let (7, Field::Bytes(graph)) = (num, field) else {
            continue;
        };
        let mut g = Reader::new(graph);
        while let Some((num, field)) = g.next()? {
            if let (5, Field::Bytes(t)) = (num, field) {
                if let (name, Some(tensor)) = parse_tensor(t)? {
                    out.insert(name, tensor);
                }
            }
        }
    }
    Ok(out)
}

/// Read the Silero VAD weights from the package's `silero_vad_16k_op15.onnx`.
pub fn read(path: &Path) -> Result<VadWeights> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let inits = initializers(&bytes)
        .map_err(|()| Error::model(path, "not an ONNX model (malformed protobuf)"))?;
    VadWeights::from_tensors(|name, shape| {
        let key = onnx_name(name);
        let (dims, values) = inits
            .get(&key)
            .ok_or_else(|| Error::model(path, format!("no initializer {key}")))?;
        let numel: usize = shape.iter().product();
        if dims != shape || values.len() != numel {
            return Err(Error::model(
                path,
                format!(
                    "{key}: expected {shape:?}, found {dims:?} with {} values",
                    values.len()
                ),
            ));
        }
        Ok(values.clone())
    })
}
