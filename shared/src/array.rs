//! A minimal owned 3-D f32 array, row-major (C order), the type spectrograms travel in.

#[derive(Clone, Debug, PartialEq)]
pub struct Array3 {
    pub shape: [usize; 3],
    pub data: Vec<f32>,
}

impl Array3 {
    pub fn zeros(shape: [usize; 3]) -> Array3 {
        Array3 { shape, data: vec![0.0; shape[0] * shape[1] * shape[2]] }
    }

    pub fn from_vec(shape: [usize; 3], data: Vec<f32>) -> Array3 {
        assert_eq!(shape[0] * shape[1] * shape[2], data.len(), "shape {shape:?} does not match data length");
        Array3 { shape, data }
    }

    #[inline]
    pub fn idx(&self, c: usize, f: usize, t: usize) -> usize {
        (c * self.shape[1] + f) * self.shape[2] + t
    }

    #[inline]
    pub fn get(&self, c: usize, f: usize, t: usize) -> f32 {
        self.data[self.idx(c, f, t)]
    }

    /// The contiguous (shape[1] x shape[2]) plane of channel `c`.
    pub fn channel(&self, c: usize) -> &[f32] {
        let n = self.shape[1] * self.shape[2];
        &self.data[c * n..(c + 1) * n]
    }

    pub fn channel_mut(&mut self, c: usize) -> &mut [f32] {
        let n = self.shape[1] * self.shape[2];
        &mut self.data[c * n..(c + 1) * n]
    }

    /// Keep frames `start..end` of the last axis.
    pub fn crop_time(&self, start: usize, end: usize) -> Array3 {
        let [c, f, _] = self.shape;
        let t = end - start;
        let mut out = Vec::with_capacity(c * f * t);
        for row in self.data.chunks_exact(self.shape[2]) {
            out.extend_from_slice(&row[start..end]);
        }
        Array3::from_vec([c, f, t], out)
    }

    /// Stack along the first axis; all parts must share the last two dimensions.
    pub fn concat(parts: &[&Array3]) -> Array3 {
        let [_, f, t] = parts[0].shape;
        let mut data = Vec::new();
        let mut c = 0;
        for p in parts {
            assert_eq!([p.shape[1], p.shape[2]], [f, t], "concat: mismatched shapes");
            data.extend_from_slice(&p.data);
            c += p.shape[0];
        }
        Array3::from_vec([c, f, t], data)
    }
}
