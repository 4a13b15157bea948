//! The [`ScalarEmit`] implementation that op rules emit through, in scalar or vector code, and
//! the helpers it uses (constants, selects, bit casts, math calls).

use super::{Lowerer, batch_signature, gemm_signature, little, math_signature, val_ty, vec_ty};
use crate::ir::DType;
use crate::jit::vmath;
use crate::ops::{Cmp, FBinary, FUnary, MathFn, SVal, ScalarEmit};
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::immediates::{Ieee32, Ieee64};
use cranelift_codegen::ir::{
    ExtFuncData, ExternalName, FuncRef, InstBuilder, MemFlagsData, Signature, Type,
    UserExternalName, Value, types,
};

impl<'f, 'g> Lowerer<'f, 'g> {
    /// A float constant of `dt` as a scalar.
    pub(super) fn float(&mut self, dt: DType, x: f64) -> Value {
        match dt {
            DType::F32 => self.b.ins().f32const(x as f32),
            _ => self.b.ins().f64const(x),
        }
    }

    /// The NaN the interpreter produces (`f32::NAN` / `f64::NAN`), in the current code.
    pub(super) fn nan(&mut self, dt: DType) -> Value {
        let s = match dt {
            DType::F32 => self.b.ins().f32const(Ieee32::with_bits(f32::NAN.to_bits())),
            _ => self.b.ins().f64const(Ieee64::with_bits(f64::NAN.to_bits())),
        };
        self.widen(s, dt)
    }

    /// `if mask { a } else { b }` for scalars (i8 mask) or lanes (integer mask vector).
    pub(super) fn sel(&mut self, mask: Value, a: Value, b: Value) -> Value {
        let ty = self.b.func.dfg.value_type(a);
        if ty.is_vector() {
            let m = if self.b.func.dfg.value_type(mask) == ty {
                mask
            } else {
                self.b.ins().bitcast(ty, little(), mask)
            };
            self.b.ins().bitselect(m, a, b)
        } else {
            self.b.ins().select(mask, a, b)
        }
    }

    /// The integer view of a float scalar or vector.
    pub(super) fn as_int(&mut self, x: Value) -> Value {
        let ty = self.b.func.dfg.value_type(x);
        if ty.is_vector() {
            self.b.ins().bitcast(ty.as_int(), little(), x)
        } else {
            self.b.ins().bitcast(ty.as_int(), MemFlagsData::new(), x)
        }
    }

    pub(super) fn as_float(&mut self, x: Value, ty: Type) -> Value {
        let flags = if ty.is_vector() {
            little()
        } else {
            MemFlagsData::new()
        };
        self.b.ins().bitcast(ty, flags, x)
    }

    /// The interpreter's `reduce_max`/`reduce_min` step: NaN if either is NaN, else `v` if it
    /// beats `a` strictly, else `a`.
    pub(super) fn extreme(&mut self, dt: DType, a: Value, v: Value, beats: FloatCC) -> Value {
        let wins = self.b.ins().fcmp(beats, v, a);
        let r = self.sel(wins, v, a);
        let nan = self.b.ins().fcmp(FloatCC::Unordered, a, v);
        let ty = self.b.func.dfg.value_type(a);
        let q = match dt {
            DType::F32 => self.b.ins().f32const(Ieee32::with_bits(f32::NAN.to_bits())),
            _ => self.b.ins().f64const(Ieee64::with_bits(f64::NAN.to_bits())),
        };
        let q = if ty.is_vector() {
            self.b.ins().splat(ty, q)
        } else {
            q
        };
        self.sel(nan, q, r)
    }

    pub(super) fn sval(&mut self, v: Value, dt: DType) -> SVal {
        self.vals.push((v, dt));
        SVal((self.vals.len() - 1) as u32)
    }

    pub(super) fn val(&self, x: SVal) -> Value {
        self.vals[x.0 as usize].0
    }

    /// Imports module function `index` (signature `sig`) into the function being built.
    pub(super) fn import(&mut self, index: u32, sig: Signature) -> FuncRef {
        let signature = self.b.import_signature(sig);
        let name = self
            .b
            .func
            .declare_imported_user_function(UserExternalName::new(0, index));
        self.b.import_function(ExtFuncData {
            name: ExternalName::user(name),
            signature,
            colocated: false,
            patchable: false,
        })
    }

    pub(super) fn gemm_ref(&mut self, dt: DType) -> FuncRef {
        if let Some(&r) = self.gemm_refs.get(&dt) {
            return r;
        }
        let r = self.import(
            self.imports.gemm[&dt],
            gemm_signature(self.ptr, self.call_conv),
        );
        self.gemm_refs.insert(dt, r);
        r
    }

    pub(super) fn batch_ref(&mut self, f: MathFn, dt: DType) -> FuncRef {
        if let Some(&r) = self.batch_refs.get(&(f, dt)) {
            return r;
        }
        let r = self.import(
            self.imports.batch[&(f, dt)],
            batch_signature(self.ptr, self.call_conv),
        );
        self.batch_refs.insert((f, dt), r);
        r
    }

    pub(super) fn math_ref(&mut self, f: MathFn, dt: DType) -> FuncRef {
        if let Some(&r) = self.math_refs.get(&(f, dt)) {
            return r;
        }
        let r = self.import(
            self.imports.math[&(f, dt)],
            math_signature(f, dt, self.call_conv),
        );
        self.math_refs.insert((f, dt), r);
        r
    }

    /// `f` on every lane of `args` through the scalar libm wrapper.
    pub(super) fn lanewise(&mut self, f: MathFn, dt: DType, args: &[Value]) -> Value {
        let r = self.math_ref(f, dt);
        let mut out = args[0];
        let n = self.b.func.dfg.value_type(out).lane_count();
        for lane in 0..n {
            let es: Vec<Value> = args
                .iter()
                .map(|&a| self.b.ins().extractlane(a, lane as u8))
                .collect();
            let inst = self.b.ins().call(r, &es);
            let c = self.b.inst_results(inst)[0];
            out = self.b.ins().insertlane(out, c, lane as u8);
        }
        out
    }

    /// A vector transcendental; the lanes outside its fast range are recorded for the slow
    /// pass (see [`Lowerer::chunk`]).
    pub(super) fn vector_call(&mut self, f: MathFn, x: Value) -> Value {
        let a = vmath::emit(&mut self.b, self.opts.fma, f, x);
        if let Some(bad) = a.bad {
            let (var, _) = self.bad.expect("vector code runs in a fast pass");
            let m = self.b.use_var(var);
            let m = self.b.ins().bor(m, bad);
            self.b.def_var(var, m);
            self.bad = Some((var, true));
        }
        a.value
    }

    /// `ops` max/min semantics: NaN if either is NaN (the interpreter's NaN), else the larger
    /// (smaller) one, with `+0 > -0`. Equal values differ at most in the sign of zero, so the
    /// bitwise AND (max) or OR (min) of the two picks the right zero.
    pub(super) fn max_min(&mut self, dt: DType, x: Value, y: Value, max: bool) -> Value {
        let cc = if max {
            FloatCC::GreaterThan
        } else {
            FloatCC::LessThan
        };
        let wins = self.b.ins().fcmp(cc, x, y);
        let pick = self.sel(wins, x, y);
        let ty = self.b.func.dfg.value_type(x);
        let (xi, yi) = (self.as_int(x), self.as_int(y));
        let tie_bits = if max {
            self.b.ins().band(xi, yi)
        } else {
            self.b.ins().bor(xi, yi)
        };
        let tie = self.as_float(tie_bits, ty);
        let eq = self.b.ins().fcmp(FloatCC::Equal, x, y);
        let r = self.sel(eq, tie, pick);
        let nan = self.b.ins().fcmp(FloatCC::Unordered, x, y);
        let q = self.nan(dt);
        self.sel(nan, q, r)
    }
}

impl ScalarEmit for Lowerer<'_, '_> {
    fn fconst(&mut self, dtype: DType, x: f64) -> SVal {
        let s = match dtype {
            DType::Bool => self.b.ins().iconst(types::I8, i64::from(x != 0.0)),
            d => self.float(d, x),
        };
        let v = self.widen(s, dtype);
        self.sval(v, dtype)
    }

    fn unary(&mut self, op: FUnary, x: SVal) -> SVal {
        let (v, dt) = self.vals[x.0 as usize];
        let r = match op {
            // Cranelift lowers a vector `fneg` to three instructions (building the sign mask
            // each time); an XOR with a splat of -0.0 is one, with the mask kept in a
            // register. Same bits, NaN signs included.
            FUnary::Neg if self.lanes > 1 => {
                let m = self.float(dt, -0.0);
                let m = self.b.ins().splat(vec_ty(dt), m);
                self.b.ins().bxor(v, m)
            }
            FUnary::Neg => self.b.ins().fneg(v),
            FUnary::Abs => self.b.ins().fabs(v),
            FUnary::Sqrt => self.b.ins().sqrt(v),
        };
        self.sval(r, dt)
    }

    fn binary(&mut self, op: FBinary, a: SVal, b: SVal) -> SVal {
        let (x, dt) = self.vals[a.0 as usize];
        let y = self.val(b);
        let r = match op {
            FBinary::Add => self.b.ins().fadd(x, y),
            FBinary::Sub => self.b.ins().fsub(x, y),
            FBinary::Mul => self.b.ins().fmul(x, y),
            FBinary::Div => self.b.ins().fdiv(x, y),
            FBinary::Max => self.max_min(dt, x, y, true),
            FBinary::Min => self.max_min(dt, x, y, false),
        };
        self.sval(r, dt)
    }

    fn call(&mut self, f: MathFn, args: &[SVal]) -> SVal {
        let dt = self.vals[args[0].0 as usize].1;
        let vs: Vec<Value> = args.iter().map(|&a| self.val(a)).collect();
        let staged = if self.lanes > 1 {
            self.staged_call(f, dt, &vs)
        } else {
            None
        };
        let v = if let Some(v) = staged {
            v
        } else if self.lanes == 1 {
            let r = self.math_ref(f, dt);
            let inst = self.b.ins().call(r, &vs);
            self.b.inst_results(inst)[0]
        } else if self.opts.exact || self.slow || !vmath::supported(f, self.opts.fma) {
            self.lanewise(f, dt, &vs)
        } else {
            self.vector_call(f, vs[0])
        };
        self.sval(v, dt)
    }

    fn compare(&mut self, cmp: Cmp, a: SVal, b: SVal) -> SVal {
        let cc = match cmp {
            Cmp::Lt => FloatCC::LessThan,
            Cmp::Le => FloatCC::LessThanOrEqual,
            Cmp::Gt => FloatCC::GreaterThan,
            Cmp::Ge => FloatCC::GreaterThanOrEqual,
            Cmp::Eq => FloatCC::Equal,
            // Unordered or unequal: true when either is NaN, like Rust's `!=`.
            Cmp::Ne => FloatCC::NotEqual,
        };
        let (x, y) = (self.val(a), self.val(b));
        let r = self.b.ins().fcmp(cc, x, y);
        self.sval(r, DType::Bool)
    }

    fn select(&mut self, c: SVal, a: SVal, b: SVal) -> SVal {
        let (x, dt) = self.vals[a.0 as usize];
        let (c, y) = (self.val(c), self.val(b));
        let r = self.sel(c, x, y);
        self.sval(r, dt)
    }

    fn cast(&mut self, x: SVal, to: DType) -> SVal {
        let (v, from) = self.vals[x.0 as usize];
        let r = match (from, to) {
            (a, b) if a == b => v,
            (DType::Bool, f) if self.lanes > 1 => {
                // All-ones lanes AND the bits of 1.0.
                let one = self.float(f, 1.0);
                let one = self.b.ins().splat(vec_ty(f), one);
                let ob = self.as_int(one);
                let m = self.b.ins().band(v, ob);
                self.as_float(m, vec_ty(f))
            }
            (DType::F64, DType::F32) => self.b.ins().fdemote(types::F32, v),
            (DType::F32, DType::F64) => self.b.ins().fpromote(types::F64, v),
            (DType::Bool, f) if f.is_float() => {
                let w = self.b.ins().uextend(types::I32, v);
                self.b.ins().fcvt_from_sint(val_ty(f), w)
            }
            (f, DType::Bool) => {
                // Not produced by the shape rules (cast targets are floats); nonzero is true.
                let z = self.float(f, 0.0);
                self.b.ins().fcmp(FloatCC::NotEqual, v, z)
            }
            _ => unreachable!("all dtype pairs covered"),
        };
        self.sval(r, to)
    }

    fn dtype(&self, x: SVal) -> DType {
        self.vals[x.0 as usize].1
    }
}
