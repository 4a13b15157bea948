//! Accepted syntax and semantics: whitespace, names, attributes, literals, limits.

use super::*;

#[test]
fn crlf_tabs_and_missing_spaces_are_accepted() {
    let src =
        "# c\r\ngraph @g {\r\n\t%a=input f64[2]\r\n%b=mul %a,%a:f64[2]# c\r\n\toutput %b\r\n}\r\n";
    let (g, printed) = round_trip(src);
    assert_eq!(g.len(), 2);
    assert_eq!(
        printed,
        "graph @g {\n  %a = input f64[2]\n  %b = mul %a, %a : f64[2]\n  output %b\n}\n"
    );
    // No newline at the end of the file is fine too.
    parse_ok("graph @g {\n%a = input f64[]\noutput %a\n}");
}

#[test]
fn nodes_record_their_statement_position() {
    let g = parse_ok("graph @g {\n\n   %x = input f64[]\n\t%y=neg %x\n  output %y\n}\n");
    assert_eq!(g.node(NodeId(0)).origin, Origin::Line(3, 4));
    assert_eq!(g.node(NodeId(1)).origin, Origin::Line(4, 2));
}

#[test]
fn names_inputs_and_outputs() {
    let g = parse_ok(&body(
        "%3 = input f64[]\n%x = input f32[2]\n%5 = neg %3\n%y = exp %5\n%8 = sin %y\n%k = const 1 : f64[]\noutput %8, %x",
    ));
    let names: Vec<Option<&str>> = g.nodes().iter().map(|n| n.name.as_deref()).collect();
    assert_eq!(
        names,
        vec![Some("3"), Some("x"), None, Some("y"), Some("8"), Some("k")]
    );
    assert_eq!(g.inputs(), vec![NodeId(0), NodeId(1)]);
    assert_eq!(g.outputs(), &[NodeId(4), NodeId(1)]);
    assert_eq!(g.input_named("3"), Some(NodeId(0)));
    assert_eq!(g.name, "g");
}

#[test]
fn attributes_are_stored_canonically() {
    let g = parse_ok(&body(
        "%x = input f64[2,3,4]\n%a = reduce_sum %x axes=[2,0] keepdims=true\n%b = reduce_min %x\n%c = slice %x stop=[2,3,4] start=[1,0,0]\n%d = powi %x n=-3\n%e = concat %x, %x axis=1\noutput %a, %b, %c, %d, %e",
    ));
    let attrs: Vec<&Attrs> = g.nodes().iter().map(|n| &n.attrs).collect();
    assert_eq!(
        attrs[1],
        &Attrs::Reduce {
            axes: vec![0, 2],
            keepdims: true
        }
    );
    assert_eq!(
        attrs[2],
        &Attrs::Reduce {
            axes: vec![0, 1, 2],
            keepdims: false
        }
    );
    assert_eq!(
        attrs[3],
        &Attrs::Slice {
            start: vec![1, 0, 0],
            stop: vec![2, 3, 4]
        }
    );
    assert_eq!(attrs[4], &Attrs::Powi { n: -3 });
    assert_eq!(attrs[5], &Attrs::Axis { axis: 1 });
    assert_eq!(g.ty(NodeId(5)), &TensorType::new(DType::F64, vec![2, 6, 4]));
}

pub(super) fn const_of(src_value: &str, ty: &str) -> Tensor {
    let g = parse_ok(&body(&format!("%c = const {src_value} : {ty}\noutput %c")));
    g.node(NodeId(0)).attrs.as_const().unwrap().clone()
}

#[test]
fn literals_round_directly_to_their_dtype() {
    // Independent expectations: IEEE bit patterns computed by hand.
    let f32_bits = |t: &Tensor| match t.data() {
        Data::F32(v) => v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        _ => panic!("not f32"),
    };
    // 0.1 -> 0x3DCCCCCD; 16777217 = 2^24 + 1 ties to even -> 2^24 = 0x4B800000.
    assert_eq!(
        f32_bits(&const_of("[0.1, 16777217]", "f32[2]")),
        vec![0x3DCC_CCCD, 0x4B80_0000]
    );
    // Just above the midpoint between 1 and 1 + 2^-23: direct rounding goes up (0x3F800001);
    // rounding through f64 first would land exactly on the midpoint and tie down to 1.0.
    assert_eq!(
        f32_bits(&const_of("1.00000005960464477539062500001", "f32[]")),
        vec![0x3F80_0001]
    );
    // The largest finite f32 is (2 - 2^-23) * 2^127 = 3.4028234663852886e38; decimals below the
    // midpoint to 2^128 (3.4028235677973366e38) round down to it, decimals above overflow.
    assert_eq!(
        f32_bits(&const_of(
            "[3.4028234663852886e38, 3.4028235677e38]",
            "f32[2]"
        )),
        vec![0x7F7F_FFFF, 0x7F7F_FFFF]
    );
    let e = text::parse(&body("%c = const 3.4028235678e38 : f32[]\noutput %c")).unwrap_err();
    assert!(e.message.contains("too large for f32"), "{e}");
    // Underflow to zero is not an error; -0 keeps its sign.
    assert_eq!(
        f32_bits(&const_of("[1e-50, -0]", "f32[2]")),
        vec![0, 0x8000_0000]
    );
    let t = const_of("[1.7976931348623157e308, -5e-324, inf, nan]", "f64[4]");
    let Data::F64(v) = t.data() else { panic!() };
    assert_eq!(v[0], f64::MAX);
    assert_eq!(v[1].to_bits(), 0x8000_0000_0000_0001);
    assert_eq!(v[2], f64::INFINITY);
    assert!(v[3].is_nan());
    let t = const_of("true", "bool[2,2]");
    assert_eq!(t.data(), &Data::Bool(vec![true; 4]));
    let t = const_of("[[1,2,3],[4,5,6]]", "f64[2,3]");
    assert_eq!(t.to_f64_vec(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
}

#[test]
fn limits_are_checked_before_allocating() {
    // The largest legal type costs nothing for an input (no data), and ops on it infer types only.
    let g = parse_ok(&body(&format!(
        "%x = input f32[{MAX_ELEMENTS}]\n%y = neg %x\noutput %y"
    )));
    assert_eq!(g.ty(NodeId(1)).numel(), MAX_ELEMENTS);
    // A constant at the limit is accepted, one element more is a clear error.
    let big = const_of("true", &format!("bool[{MAX_CONST_ELEMENTS}]"));
    assert_eq!(big.numel(), 1 << 24);
    let e = text::parse(&body(&format!(
        "%c = const true : bool[{}]\noutput %c",
        MAX_CONST_ELEMENTS + 1
    )))
    .unwrap_err();
    assert!(e.message.contains("constant too large"), "{e}");
    // Huge declared shapes fail fast, whatever the op.
    let t = Instant::now();
    for src in [
        "%c = const 0 : f32[1000000000,1000000000]",
        "%c = const [0] : f32[2147483647]",
        "%x = input f32[1000000000,1000000000]",
    ] {
        assert!(text::parse(&body(&format!("{src}\noutput %c"))).is_err());
    }
    assert!(t.elapsed().as_secs_f64() < 1.0);
}

#[test]
fn deep_nesting_does_not_recurse() {
    let depth = 200_000;
    let src = body(&format!(
        "%c = const {}1{} : f64[]\noutput %c",
        "[".repeat(depth),
        "]".repeat(depth)
    ));
    let e = text::parse(&src).unwrap_err();
    assert!(e.message.contains("single literal"), "{e}");
    let ones = vec!["1"; depth].join(",");
    let src = body(&format!(
        "%c = const {}0{} : f64[{ones}]\noutput %c",
        "[".repeat(depth),
        "]".repeat(depth)
    ));
    let g = parse_ok(&src);
    assert_eq!(g.ty(NodeId(0)).rank(), depth);
    let printed = text::print(&g);
    assert!(parse_ok(&printed).same(&g));
}
