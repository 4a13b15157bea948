//! A JSON-free tree for eval inputs and outputs, with accessors that report what was wrong.

use super::GbError;

/// An eval's input or output: numbers, booleans, arrays and objects (anything else is
/// [`Value::Other`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A number.
    Num(f64),
    /// A boolean (`ht`'s `is_mirrored`).
    Bool(bool),
    /// An array.
    Array(Vec<Value>),
    /// An object, its fields in order.
    Object(Vec<(String, Value)>),
    /// A string or null, named by its kind (evals never need these).
    Other(&'static str),
}

fn bad(msg: String) -> GbError {
    GbError::Input(msg)
}

impl Value {
    /// An array of numbers.
    pub fn list(xs: Vec<f64>) -> Value {
        Value::Array(xs.into_iter().map(Value::Num).collect())
    }

    /// An array of `rows` arrays of `cols` numbers from row-major `flat`.
    pub fn rows(flat: &[f64], cols: usize) -> Value {
        Value::Array(
            flat.chunks(cols.max(1))
                .map(|r| Value::list(r.to_vec()))
                .collect(),
        )
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::Num(_) => "a number",
            Value::Bool(_) => "a boolean",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
            Value::Other(k) => k,
        }
    }

    /// The field `name` of an object.
    ///
    /// # Errors
    /// [`GbError::Input`] if `self` is not an object or has no such field.
    pub fn field(&self, name: &str) -> Result<&Value, GbError> {
        match self {
            Value::Object(fs) => fs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
                .ok_or_else(|| bad(format!("the input has no field `{name}`"))),
            v => Err(bad(format!(
                "expected an object with field `{name}`, got {}",
                v.kind()
            ))),
        }
    }

    /// The number of field `name`.
    ///
    /// # Errors
    /// [`GbError::Input`] if missing or not a number.
    pub fn num(&self, name: &str) -> Result<f64, GbError> {
        match self.field(name)? {
            Value::Num(x) => Ok(*x),
            v => Err(bad(format!(
                "field `{name}`: expected a number, got {}",
                v.kind()
            ))),
        }
    }

    /// The boolean of field `name`.
    ///
    /// # Errors
    /// [`GbError::Input`] if missing or not a boolean.
    pub fn flag(&self, name: &str) -> Result<bool, GbError> {
        match self.field(name)? {
            Value::Bool(x) => Ok(*x),
            v => Err(bad(format!(
                "field `{name}`: expected a boolean, got {}",
                v.kind()
            ))),
        }
    }

    /// The non-negative integer of field `name`.
    ///
    /// # Errors
    /// [`GbError::Input`] if missing or not a non-negative integer.
    pub fn count(&self, name: &str) -> Result<usize, GbError> {
        let x = self.num(name)?;
        if x >= 0.0 && x.fract() == 0.0 && x < 1e15 {
            Ok(x as usize)
        } else {
            Err(bad(format!(
                "field `{name}`: expected a non-negative integer, got {x}"
            )))
        }
    }

    /// This value as a list of numbers (`what` names it in errors).
    ///
    /// # Errors
    /// [`GbError::Input`] if not an array of numbers.
    pub fn as_list(&self, what: &str) -> Result<Vec<f64>, GbError> {
        match self {
            Value::Num(x) => Err(bad(format!(
                "{what}: expected an array, got the number {x}"
            ))),
            Value::Array(xs) => xs
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Num(x) => Ok(*x),
                    v => Err(bad(format!(
                        "{what}[{i}]: expected a number, got {}",
                        v.kind()
                    ))),
                })
                .collect(),
            v => Err(bad(format!("{what}: expected an array, got {}", v.kind()))),
        }
    }

    /// The list of numbers of field `name`.
    ///
    /// # Errors
    /// [`GbError::Input`] if missing or not an array of numbers.
    pub fn list_field(&self, name: &str) -> Result<Vec<f64>, GbError> {
        self.field(name)?.as_list(&format!("field `{name}`"))
    }

    /// The matrix of field `name` (an array of equally long arrays of numbers) as
    /// `(rows, cols, row-major data)`. An empty array has `cols` 0.
    ///
    /// # Errors
    /// [`GbError::Input`] if missing, not an array of arrays of numbers, or ragged.
    pub fn matrix_field(&self, name: &str) -> Result<(usize, usize, Vec<f64>), GbError> {
        let Value::Array(rows) = self.field(name)? else {
            return Err(bad(format!(
                "field `{name}`: expected an array of arrays, got {}",
                self.field(name)?.kind()
            )));
        };
        let mut flat = Vec::new();
        let mut cols = 0;
        for (i, r) in rows.iter().enumerate() {
            let row = r.as_list(&format!("field `{name}`[{i}]"))?;
            if i == 0 {
                cols = row.len();
            } else if row.len() != cols {
                return Err(bad(format!(
                    "field `{name}`: row {i} has {} numbers, row 0 has {cols}",
                    row.len()
                )));
            }
            flat.extend(row);
        }
        Ok((rows.len(), cols, flat))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ragged_matrix_is_an_input_error_naming_the_row() {
        let v = Value::Object(vec![(
            "m".into(),
            Value::Array(vec![Value::list(vec![1.0, 2.0]), Value::list(vec![3.0])]),
        )]);
        let e = v.matrix_field("m").unwrap_err().to_string();
        assert!(e.contains("row 1 has 1"), "{e}");
        assert!(v.count("m").is_err());
        assert!(
            v.field("nope")
                .unwrap_err()
                .to_string()
                .contains("no field `nope`")
        );
    }
}
