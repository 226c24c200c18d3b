//! The architecture component's input: normalized tensor name -> (dtype name, shape), sorted
//! by name, in compact tables.
//!
//! A checkpoint may hold hundreds of thousands of tensors (a 10 MB safetensors header lists
//! 170,000), and `ckpt diff` holds two of these while it builds the catalog entries of both
//! sides. As a `BTreeMap<String, (String, Vec<u64>)>` a tensor cost ~130 bytes and three
//! allocations (22 MB a side); here it is its name's bytes in one string, its dimensions in
//! one vector and a 20-byte row.

/// Names and shapes of a state dict's tensors, sorted by name, names unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TensorTable {
    names: String,
    dims: Vec<u64>,
    /// The distinct dtype names (a handful), which rows point into.
    dtypes: Vec<&'static str>,
    rows: Vec<Row>,
}

/// One tensor: its name is `names[name..name + name_len]`, its shape
/// `dims[dims..dims + rank]`, its dtype `dtypes[dtype]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Row {
    name: u32,
    name_len: u32,
    dims: u32,
    rank: u32,
    dtype: u32,
}

impl TensorTable {
    /// The table of `(name, dtype, shape)` rows given in any order; of rows with one name the
    /// last given is kept (as inserting them into a map one after another would).
    ///
    /// Rows whose name or dimensions would not fit the tables' 32-bit offsets (4 GiB of
    /// names) are left out: no checkpoint ckpt opens can hold that many.
    pub fn build<N: AsRef<str>, S: AsRef<[u64]>>(
        rows: impl IntoIterator<Item = (N, &'static str, S)>,
    ) -> TensorTable {
        let mut t = TensorTable::default();
        for (name, dtype, shape) in rows {
            let (name, shape) = (name.as_ref(), shape.as_ref());
            let d = match t.dtypes.iter().position(|x| *x == dtype) {
                Some(d) => d,
                None => {
                    t.dtypes.push(dtype);
                    t.dtypes.len() - 1
                }
            };
            let (n0, d0) = (t.names.len(), t.dims.len());
            let (Ok(name_at), Ok(name_len), Ok(dims_at), Ok(rank), Ok(dtype), Ok(_), Ok(_)) = (
                u32::try_from(n0),
                u32::try_from(name.len()),
                u32::try_from(d0),
                u32::try_from(shape.len()),
                u32::try_from(d),
                u32::try_from(n0 + name.len()),
                u32::try_from(d0 + shape.len()),
            ) else {
                continue;
            };
            t.names.push_str(name);
            t.dims.extend_from_slice(shape);
            t.rows.push(Row {
                name: name_at,
                name_len,
                dims: dims_at,
                rank,
                dtype,
            });
        }
        t.names.shrink_to_fit();
        t.dims.shrink_to_fit();
        // Sorted by name, then by the order given: of equal names, the last is kept.
        let mut order: Vec<u32> = (0..t.rows.len())
            .filter_map(|i| u32::try_from(i).ok())
            .collect();
        order.sort_by(|a, b| t.row_name(*a as usize).cmp(t.row_name(*b as usize)));
        let mut rows: Vec<Row> = Vec::with_capacity(order.len());
        for (k, i) in order.iter().enumerate() {
            let last_of_name = order
                .get(k + 1)
                .is_none_or(|j| t.row_name(*j as usize) != t.row_name(*i as usize));
            if last_of_name && let Some(r) = t.rows.get(*i as usize) {
                rows.push(*r);
            }
        }
        t.rows = rows;
        t
    }

    fn row_name(&self, i: usize) -> &str {
        self.rows.get(i).map_or("", |r| self.name_of(r))
    }

    fn name_of(&self, r: &Row) -> &str {
        let at = r.name as usize;
        self.names.get(at..at + r.name_len as usize).unwrap_or("")
    }

    fn entry(&self, r: &Row) -> (&str, &'static str, &[u64]) {
        let at = r.dims as usize;
        (
            self.name_of(r),
            self.dtypes.get(r.dtype as usize).copied().unwrap_or(""),
            self.dims.get(at..at + r.rank as usize).unwrap_or(&[]),
        )
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// `(name, dtype, shape)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &'static str, &[u64])> + '_ {
        self.rows.iter().map(|r| self.entry(r))
    }

    /// Names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.iter().map(|(n, _, _)| n)
    }

    /// The dtype and shape of `name`.
    pub fn get(&self, name: &str) -> Option<(&'static str, &[u64])> {
        let i = self
            .rows
            .binary_search_by(|r| self.name_of(r).cmp(name))
            .ok()?;
        let (_, dtype, shape) = self.entry(self.rows.get(i)?);
        Some((dtype, shape))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The table reads as the map it replaces, built by inserting the same rows one after
    /// another: same order, same entries, the last of a repeated name kept.
    #[test]
    fn reads_as_the_map_it_replaces() {
        let rows: Vec<(&str, &'static str, Vec<u64>)> = vec![
            ("b.weight", "float32", vec![4, 2]),
            ("a", "int64", vec![]),
            ("é.x", "bfloat16", vec![1, 2, 3]),
            ("b.weight", "float16", vec![8]),
            ("a.bias", "float32", vec![0]),
        ];
        let mut map: BTreeMap<String, (String, Vec<u64>)> = BTreeMap::new();
        for (n, d, s) in &rows {
            map.insert((*n).to_owned(), ((*d).to_owned(), s.clone()));
        }
        let t = TensorTable::build(rows.iter().map(|(n, d, s)| (*n, *d, s.as_slice())));
        let got: Vec<(String, String, Vec<u64>)> = t
            .iter()
            .map(|(n, d, s)| (n.to_owned(), d.to_owned(), s.to_vec()))
            .collect();
        let want: Vec<(String, String, Vec<u64>)> = map
            .iter()
            .map(|(n, (d, s))| (n.clone(), d.clone(), s.clone()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(t.len(), 4);
        assert_eq!(t.get("b.weight"), Some(("float16", &[8u64][..])));
        assert_eq!(t.get("a"), Some(("int64", &[][..])));
        assert_eq!(t.get("zz"), None);
        assert!(t.contains("a.bias") && !t.contains("b"));
        assert!(TensorTable::default().is_empty());
    }
}
