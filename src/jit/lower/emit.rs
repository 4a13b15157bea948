//! The [`ScalarEmit`] implementation that op rules emit through, in scalar or vector code, and
//! the helpers it uses (constants, selects, bit casts, math calls).

use super::fused::{Cx, Mode};
use super::staged::Stage;
use super::{Lowerer, batch_signature, gemm_signature, little, math_signature, val_ty, vec_ty};
use crate::ir::DType;
use crate::jit::vmath;
use crate::ops::{Cmp, FBinary, FUnary, MathFn, SVal, ScalarEmit};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
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

    /// The NaN the interpreter produces (`f32::NAN` / `f64::NAN`), in `mode`'s code.
    pub(super) fn nan(&mut self, mode: Mode, dt: DType) -> Value {
        let s = match dt {
            DType::F32 => self.b.ins().f32const(Ieee32::with_bits(f32::NAN.to_bits())),
            _ => self.b.ins().f64const(Ieee64::with_bits(f64::NAN.to_bits())),
        };
        self.widen(mode, s, dt)
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

    pub(super) fn all_reduce_ref(&mut self) -> FuncRef {
        self.import(
            self.imports.all_reduce,
            super::collective_signature(self.ptr, self.call_conv),
        )
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

    /// `ops` max/min semantics: NaN if either is NaN (the interpreter's NaN), else the larger
    /// (smaller) one, with `+0 > -0`. Equal values differ at most in the sign of zero, so the
    /// bitwise AND (max) or OR (min) of the two picks the right zero.
    pub(super) fn max_min(
        &mut self,
        mode: Mode,
        dt: DType,
        x: Value,
        y: Value,
        max: bool,
    ) -> Value {
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
        let q = self.nan(mode, dt);
        self.sel(nan, q, r)
    }
}

/// The [`ScalarEmit`] the op rules of a fused group's members emit through: the lowering
/// state and what describes the code being emitted.
pub(super) struct Em<'a, 'f, 'g> {
    pub(super) lw: &'a mut Lowerer<'f, 'g>,
    /// The group's pass: its [`Mode`] (lanes, vector dtype, fast or slow pass, the fast pass's
    /// mask of bad lanes).
    pub(super) cx: &'a Cx<'a>,
    /// The pass of a staged segment being emitted.
    pub(super) stage: &'a mut Stage,
}

impl Em<'_, '_, '_> {
    /// A vector transcendental; the lanes outside its fast range are recorded for the slow
    /// pass (see [`Lowerer::chunk`]).
    fn vector_call(&mut self, f: MathFn, x: Value) -> Value {
        let b = &mut self.lw.b;
        let a = vmath::emit(b, self.lw.opts.fma, f, x);
        if let Some(bad) = a.bad {
            let var = self.cx.mode.bad.expect("vector code runs in a fast pass");
            let m = b.use_var(var);
            let m = b.ins().bor(m, bad);
            b.def_var(var, m);
            self.cx.bad_set.set(true);
        }
        a.value
    }
}

impl ScalarEmit for Em<'_, '_, '_> {
    fn fconst(&mut self, dtype: DType, x: f64) -> SVal {
        let s = match dtype {
            DType::Bool => self.lw.b.ins().iconst(types::I8, i64::from(x != 0.0)),
            // Integer groups are never vectorized (see `plan`), so this stays a scalar.
            DType::I32 => self
                .lw
                .b
                .ins()
                .iconst(types::I32, i64::from(x as i32 as u32)),
            d => self.lw.float(d, x),
        };
        let v = self.lw.widen(self.cx.mode, s, dtype);
        self.lw.sval(v, dtype)
    }

    fn unary(&mut self, op: FUnary, x: SVal) -> SVal {
        let (v, dt) = self.lw.vals[x.0 as usize];
        let r = match op {
            // Cranelift lowers a vector `fneg` to three instructions (building the sign mask
            // each time); an XOR with a splat of -0.0 is one, with the mask kept in a
            // register. Same bits, NaN signs included.
            FUnary::Neg if self.cx.mode.lanes > 1 => {
                let m = self.lw.float(dt, -0.0);
                let m = self.lw.b.ins().splat(vec_ty(dt), m);
                self.lw.b.ins().bxor(v, m)
            }
            FUnary::Neg => self.lw.b.ins().fneg(v),
            FUnary::Abs => self.lw.b.ins().fabs(v),
            FUnary::Sqrt => self.lw.b.ins().sqrt(v),
            FUnary::Floor => self.lw.b.ins().floor(v),
            FUnary::Ceil => self.lw.b.ins().ceil(v),
            FUnary::RoundEven => self.lw.b.ins().nearest(v),
        };
        self.lw.sval(r, dt)
    }

    fn binary(&mut self, op: FBinary, a: SVal, b: SVal) -> SVal {
        let (x, dt) = self.lw.vals[a.0 as usize];
        let y = self.lw.val(b);
        let r = match op {
            FBinary::Add => self.lw.b.ins().fadd(x, y),
            FBinary::Sub => self.lw.b.ins().fsub(x, y),
            FBinary::Mul => self.lw.b.ins().fmul(x, y),
            FBinary::Div => self.lw.b.ins().fdiv(x, y),
            FBinary::Max => self.lw.max_min(self.cx.mode, dt, x, y, true),
            FBinary::Min => self.lw.max_min(self.cx.mode, dt, x, y, false),
        };
        self.lw.sval(r, dt)
    }

    fn call(&mut self, f: MathFn, args: &[SVal]) -> SVal {
        let dt = self.lw.vals[args[0].0 as usize].1;
        let vs: Vec<Value> = args.iter().map(|&a| self.lw.val(a)).collect();
        let staged = if self.cx.mode.lanes > 1 {
            self.lw.staged_call(self.stage, f, dt, &vs)
        } else {
            None
        };
        let v = if let Some(v) = staged {
            v
        } else if self.cx.mode.lanes == 1 {
            let r = self.lw.math_ref(f, dt);
            let inst = self.lw.b.ins().call(r, &vs);
            self.lw.b.inst_results(inst)[0]
        } else if self.lw.opts.exact || self.cx.mode.slow || !vmath::supported(f, self.lw.opts.fma)
        {
            self.lw.lanewise(f, dt, &vs)
        } else {
            self.vector_call(f, vs[0])
        };
        self.lw.sval(v, dt)
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
        let (x, y) = (self.lw.val(a), self.lw.val(b));
        let r = if self.dtype(a) == DType::I32 {
            let icc = match cmp {
                Cmp::Lt => IntCC::SignedLessThan,
                Cmp::Le => IntCC::SignedLessThanOrEqual,
                Cmp::Gt => IntCC::SignedGreaterThan,
                Cmp::Ge => IntCC::SignedGreaterThanOrEqual,
                Cmp::Eq => IntCC::Equal,
                Cmp::Ne => IntCC::NotEqual,
            };
            self.lw.b.ins().icmp(icc, x, y)
        } else {
            self.lw.b.ins().fcmp(cc, x, y)
        };
        self.lw.sval(r, DType::Bool)
    }

    fn select(&mut self, c: SVal, a: SVal, b: SVal) -> SVal {
        let (x, dt) = self.lw.vals[a.0 as usize];
        let (c, y) = (self.lw.val(c), self.lw.val(b));
        let r = self.lw.sel(c, x, y);
        self.lw.sval(r, dt)
    }

    fn cast(&mut self, x: SVal, to: DType) -> SVal {
        let (v, from) = self.lw.vals[x.0 as usize];
        let r = match (from, to) {
            (a, b) if a == b => v,
            (DType::Bool, f) if self.cx.mode.lanes > 1 => {
                // All-ones lanes AND the bits of 1.0.
                let one = self.lw.float(f, 1.0);
                let one = self.lw.b.ins().splat(vec_ty(f), one);
                let ob = self.lw.as_int(one);
                let m = self.lw.b.ins().band(v, ob);
                self.lw.as_float(m, vec_ty(f))
            }
            // `i32` values only occur in scalar code (integer groups are never vectorized).
            (DType::I32, f) => self.lw.b.ins().fcvt_from_sint(val_ty(f), v),
            // Saturating, NaN to 0: Rust's `as`, which the interpreter uses.
            (f, DType::I32) if f.is_float() => self.lw.b.ins().fcvt_to_sint_sat(types::I32, v),
            (DType::Bool, DType::I32) => self.lw.b.ins().uextend(types::I32, v),
            (DType::F64, DType::F32) => self.lw.b.ins().fdemote(types::F32, v),
            (DType::F32, DType::F64) => self.lw.b.ins().fpromote(types::F64, v),
            (DType::Bool, f) if f.is_float() => {
                let w = self.lw.b.ins().uextend(types::I32, v);
                self.lw.b.ins().fcvt_from_sint(val_ty(f), w)
            }
            (f, DType::Bool) => {
                // Not produced by the shape rules (cast targets are floats); nonzero is true.
                let z = self.lw.float(f, 0.0);
                self.lw.b.ins().fcmp(FloatCC::NotEqual, v, z)
            }
            _ => unreachable!("all dtype pairs covered"),
        };
        self.lw.sval(r, to)
    }

    fn dtype(&self, x: SVal) -> DType {
        self.lw.vals[x.0 as usize].1
    }
}
