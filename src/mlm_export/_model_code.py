"""What code a model file from a stranger would hand to an interpreter, read as data and held to allowlists.

``torch.export.load`` passes every ``expr_str`` of a ``.pt2`` archive to ``sympy.sympify`` (which evaluates
Python), turns ``guards_code`` into Python source it runs, and resolves each node's ``target`` by attribute
lookup from ``torch``. ``torch.jit.load`` compiles the archive's ``code/`` files, whose calls may reach any
registered operator (``torch.from_file`` reads and writes files). Each check here parses those strings with a
small tokenizer and grammar (never a pattern of what is forbidden) and names what it cannot accept.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass

#: Longest expression or guard accepted (characters), and deepest nesting: sympify and the guard compiler
#: recurse, so a bound keeps a stranger's string from exhausting the stack or the clock.
MAX_EXPR = 20_000
MAX_DEPTH = 64

#: Symbols torch.export writes for sizes: ``s0`` (backed sizes), ``u0`` (unbacked: data-dependent sizes).
SYMBOL = re.compile(r"^[su][0-9]{1,6}$")
#: Functions a symbolic size may use (``srepr`` spelling, which torch 2.14 writes, and infix ``Min``/``Max``).
SIZE_FUNCTIONS = frozenset(
    {"Symbol", "Integer", "Add", "Mul", "FloorDiv", "Mod", "PythonMod", "Min", "Max", "CeilDiv", "CleanDiv"}
    | {"Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not"}
)
#: Keyword arguments of ``Symbol(...)``: its assumptions, each True or False.
SYMBOL_ASSUMPTIONS = frozenset({"positive", "integer", "nonnegative", "real", "finite", "negative", "zero"})
#: Accessors of an input a guard may read: ``L['x'].size()[2]``, ``L['x'].stride()[0]``.
GUARD_ACCESSORS = frozenset({"size", "stride", "storage_offset", "dim"})

_TOKEN = re.compile(
    r"\s*(?:(\d+)|([A-Za-z_][A-Za-z0-9_]*)|('[A-Za-z_][A-Za-z0-9_.]*')|(//|==|!=|<=|>=|[-+*%()\[\],=.<>]))"
)


class GrammarError(ValueError):
    """A string outside the grammar; the message says what was found."""


@dataclass(frozen=True)
class _Tok:
    kind: str  # "int", "name", "str", "op", "end"
    text: str


def tokens(text: str) -> list[_Tok]:
    """The tokens of an expression; any character outside the token set is refused with its position."""
    if len(text) > MAX_EXPR:
        raise GrammarError(f"an expression of {len(text):,} characters (over {MAX_EXPR:,})")
    out: list[_Tok] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:  # named when the parser reaches it: what came before may be worse
            out.append(_Tok("bad", text[pos : pos + 12]))
            break
        kind = next(k for k, g in zip(("int", "name", "str", "op"), m.groups(), strict=True) if g is not None)
        out.append(_Tok(kind, m.group(m.lastindex or 0)))
        pos = m.end()
    out.append(_Tok("end", ""))
    return out


class _Parser:
    """Recursive descent over one token list; ``guard`` switches the atoms from symbols to ``L[...]`` reads."""

    def __init__(self, text: str, *, guard: bool) -> None:
        self.toks = tokens(text)
        self.i = 0
        self.guard = guard
        self.depth = 0

    def peek(self, text: str | None = None) -> bool:
        t = self.toks[self.i]
        return t.kind != "end" and (text is None or (t.kind in ("op", "name") and t.text == text))

    def take(self, text: str | None = None, kind: str | None = None) -> _Tok:
        t = self.toks[self.i]
        if (text is not None and t.text != text) or (kind is not None and t.kind != kind) or t.kind in ("end", "bad"):
            want = text or kind or "more"
            raise GrammarError(f"{t.text or 'the end'!r} where {want!r} was expected")
        self.i += 1
        return t

    def whole(self) -> None:
        self.boolean()
        if self.toks[self.i].kind != "end":
            raise GrammarError(f"{self.toks[self.i].text!r} after a complete expression")

    def boolean(self) -> None:
        self.nested()
        self.negation()
        while self.guard and (self.peek("and") or self.peek("or")):
            self.take()
            self.negation()
        self.depth -= 1

    def negation(self) -> None:
        if self.guard and self.peek("not"):
            self.take()
            self.negation()
            return
        self.comparison()

    def comparison(self) -> None:
        self.sum()
        while any(self.peek(op) for op in ("==", "!=", "<", "<=", ">", ">=")):
            self.take()
            self.sum()

    def sum(self) -> None:
        self.term()
        while self.peek("+") or self.peek("-"):
            self.take()
            self.term()

    def term(self) -> None:
        self.unary()
        while self.peek("*") or self.peek("//") or self.peek("%"):
            self.take()
            self.unary()

    def unary(self) -> None:
        if self.peek("-") or self.peek("+"):
            self.take()
            self.unary()
            return
        self.atom()

    def nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise GrammarError(f"nesting deeper than {MAX_DEPTH}")

    def atom(self) -> None:
        t = self.toks[self.i]
        if t.kind == "bad":
            raise GrammarError(f"{t.text!r}, which no size is written with")
        if t.kind == "int":
            self.take()
        elif t.kind == "op" and t.text == "(":
            self.take()
            self.boolean()
            self.take(")")
        elif t.kind == "name" and t.text in ("True", "False"):
            self.take()
        elif t.kind == "name" and self.guard and t.text == "L":
            self.input_read()
        elif t.kind == "name" and t.text in SIZE_FUNCTIONS:
            self.call(self.take().text)
        elif t.kind == "name" and not self.guard and SYMBOL.match(t.text):
            self.take()
        else:
            raise GrammarError(f"{t.text or 'the end'!r}, which is not a size, a symbol or an allowed function")

    def call(self, name: str) -> None:
        self.nested()
        self.take("(")
        if name == "Symbol":
            sym = self.take(kind="str").text.strip("'")
            if not SYMBOL.match(sym):
                raise GrammarError(f"the symbol name {sym!r}")
            while self.peek(","):
                self.take(",")
                key = self.take(kind="name").text
                if key not in SYMBOL_ASSUMPTIONS:
                    raise GrammarError(f"the symbol assumption {key!r}")
                self.take("=")
                if self.take(kind="name").text not in ("True", "False"):
                    raise GrammarError(f"a non-boolean value for {key!r}")
        elif name == "Integer":
            if self.peek("-"):
                self.take()
            self.take(kind="int")
        else:
            self.boolean()
            while self.peek(","):
                self.take(",")
                self.boolean()
        self.take(")")
        self.depth -= 1

    def input_read(self) -> None:
        """``L['x']['k'][0]`` then ``.size()[2]`` and the like: the only values a guard reads."""
        self.take("L")
        subscripts = 0
        while self.peek("["):
            self.take("[")
            t = self.take()
            if t.kind not in ("str", "int"):
                raise GrammarError(f"the input key {t.text!r}")
            self.take("]")
            subscripts += 1
        if not subscripts:
            raise GrammarError("'L' without an input name")
        if self.peek("."):
            self.take(".")
            accessor = self.take(kind="name").text
            if accessor not in GUARD_ACCESSORS:
                raise GrammarError(f"the accessor {accessor!r}")
            self.take("(")
            self.take(")")
            if self.peek("["):
                self.take("[")
                self.take(kind="int")
                self.take("]")


def check_size_expression(text: str) -> None:
    """Refuse (:class:`GrammarError`) a symbolic size that is not integers, ``s``/``u`` symbols, arithmetic
    (``+ - * // %``), comparisons and the functions of :data:`SIZE_FUNCTIONS`."""
    _Parser(text, guard=False).whole()


def check_guard(text: str) -> None:
    """Refuse a guard that is not a comparison of integers and sizes of the inputs (``L['x'].size()[2]``)."""
    _Parser(text, guard=True).whole()


# ---------------------------------------------------------------------------------------------- operators


def _names(words: str) -> frozenset[str]:
    """The whitespace-separated names of a long allowlist."""
    return frozenset(words.split())


#: Operators a model file may call: ones that compute on tensors, shapes, lists and numbers, grown from the
#: models this project exports (ResNet, U-Net, ViT, Swin, MobileViT, ConvNeXt, EfficientNet, DeepLab, Faster
#: R-CNN, scripted and traced). Nothing that touches files, the network, threads, the process or Python.
ATEN_OPS = _names(
    """
    abs absolute adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d adaptive_max_pool2d
    add add_ addmm affine_grid_generator alias all allclose amax amin any append arange argmax argmin argsort
    as_strided atan atan2 avg_pool1d avg_pool2d avg_pool3d baddbmm batch_norm bitwise_and bitwise_not bitwise_or
    bitwise_xor bmm bool broadcast_tensors broadcast_to cat ceil celu chunk clamp clamp_ clamp_max clamp_min clamp_min_
    clear clip clone constant_pad_nd contiguous conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d
    convolution copy_ cos cosh count_nonzero cross cumprod cumsum detach diag diagonal dim div div_ divmod dot dropout
    dropout_ einsum elu elu_ embedding empty empty_like eq equal erf erfinv exp exp_ expand expand_as expm1 extend
    eye feature_dropout fill_ flatten flip floor floor_divide floordiv fmod format frac full full_like gather ge gelu
    get glu grid_sampler group_norm gt hardsigmoid hardsigmoid_ hardswish hardswish_ hardtanh hardtanh_ index
    index_add index_fill index_put index_put_ index_select insert instance_norm int is_floating_point isfinite isinf
    isnan item items keys layer_norm le leaky_relu leaky_relu_ len lerp linear linspace list log log10 log1p log2
    log_softmax logical_and logical_not logical_or logical_xor logsumexp lt masked_fill masked_fill_ masked_select
    matmul max max_pool1d max_pool1d_with_indices max_pool2d max_pool2d_with_indices max_pool3d maximum mean median
    meshgrid min minimum mish mm mul mul_ multinomial nan_to_num narrow ne neg new_empty new_full new_ones new_zeros
    nonzero norm normal_ numel ones ones_like pad permute pixel_shuffle pixel_unshuffle pop pow prelu prod
    reciprocal reflection_pad1d reflection_pad2d relu relu6 relu_ remainder repeat repeat_interleave replication_pad1d
    replication_pad2d reshape reshape_as roll round rsqrt scaled_dot_product_attention scatter scatter_add select
    selu sigmoid sigmoid_ sign silu silu_ sin sinh size slice smooth_l1_loss softmax softplus sort split
    split_with_sizes sqrt square squeeze stack std sub sub_ sum swapaxes t tan tanh tensor tensor_split tile to topk
    transpose tril triu true_divide trunc type_as unbind unflatten unique unsqueeze upsample_bicubic2d
    upsample_bilinear2d upsample_nearest1d upsample_nearest2d upsample_nearest3d values var view view_as where zero_
    zeros zeros_like __and__ __contains__ __derive_index __getitem__ __interpolate __is__ __isnot__ __not__ __or__
    __range_length __round_to_zero_floordiv __upsample_bilinear _convolution _set_item _shape_as_tensor
    _unsafe_view floor_divide_ max_pool2d_with_indices_backward sym_size sym_numel sym_stride dict str float
    ceil_ floor_ sqrt_ exp2 hypot cdist bucketize searchsorted log_sigmoid softmin threshold threshold_ rrelu
    adaptive_max_pool3d fractional_max_pool2d lp_pool2d pairwise_distance cosine_similarity normalize renorm
    embedding_bag one_hot quantile nanmean nansum var_mean std_mean logit sgn signbit heaviside
    _upsample_bicubic2d_aa _upsample_bilinear2d_aa _upsample_lanczos2d_aa _upsample_nearest_exact1d
    _upsample_nearest_exact2d _upsample_nearest_exact3d upsample_linear1d upsample_trilinear3d bernoulli bernoulli_
    _unique2 unique_dim as_tensor scalar_tensor binary_cross_entropy_with_logits cross_entropy_loss l1_loss
    mse_loss nll_loss randperm rand rand_like randn randn_like randint uniform_ round_ update warn tolist
    _assert_scalar _assert_tensor_metadata sym_constrain_range sym_constrain_range_for_size
    """
)
#: ``prim`` operators: control flow, constants, lists, tuples, shapes and raising an error.
PRIM_OPS = _names(
    """
    Constant ListConstruct ListUnpack TupleConstruct TupleUnpack TupleIndex DictConstruct If Loop GetAttr SetAttr
    RaiseException NumToTensor ImplicitTensorToNum Uninitialized unchecked_cast unchecked_unwrap_optional
    isinstance data device dtype is_cuda is_cpu layout min max abs dtype shape requires_grad grad
    AutogradAdd AutogradZero Guard TypeCheck name is_quantized is_mkldnn is_sparse is_nested is_meta is_xpu
    is_mps is_vulkan is_ipu is_xla is_mtia is_maia EnumName EnumValue tolist range type
    """
)
#: Operators of other namespaces a model may call, by full name (torchvision's detection ops).
OTHER_OPS = frozenset(
    {"torchvision::nms", "torchvision::roi_align", "torchvision::ps_roi_align", "torchvision::roi_pool"}
    | {"torchvision::deform_conv2d", "torchvision::_cuda_version", "torchvision::box_iou_rotated"}
)
#: Python builtins TorchScript code may call.
SCRIPT_BUILTINS = _names(
    """
    annotate unchecked_cast uninitialized isinstance getattr range len int float bool str list tuple dict
    enumerate zip min max abs round divmod any all sum hasattr ord chr hash print reversed sorted
    """
)
#: Attributes of ``torch`` that name values, not operators (dtypes and layouts appear as such in code).
TORCH_VALUES = frozenset(
    {"float32", "float16", "float64", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool", "long"}
    | {"float", "half", "double", "int", "strided", "contiguous_format", "channels_last", "preserve_format"}
)


def op_allowed(namespace: str, name: str) -> bool:
    """Whether ``namespace::name`` (overload removed) is on an allowlist."""
    if namespace == "aten":
        return name in ATEN_OPS
    if namespace == "prim":
        return name in PRIM_OPS or name in ATEN_OPS
    return f"{namespace}::{name}" in OTHER_OPS


def export_target_problem(target: str) -> str | None:
    """Why a ``.pt2`` node target may not be called (None when allowed): ``torch.ops.aten.conv2d.default``,
    the ``operator`` module's arithmetic, and torch's symbolic-size helpers."""
    parts = target.split(".")
    if parts[:2] == ["torch", "ops"] and len(parts) in (4, 5):
        namespace, name = parts[2], parts[3]
        if namespace == "higher_order":
            return None if name in {"cond", "while_loop", "map_impl", "scan"} else f"calls {target}"
        return None if op_allowed(namespace, name) else f"calls the operator {namespace}::{name}"
    if parts[0] == "_operator" and len(parts) == 2 and parts[1] in _OPERATOR_FUNCTIONS:
        return None
    if target in _TORCH_SYM_FUNCTIONS:
        return None
    return f"calls {target!r}, which is not an allowed operator"


_OPERATOR_FUNCTIONS = _names("add sub mul floordiv truediv mod neg pos pow eq ne lt le gt ge getitem and_ or_ not_ abs")
_TORCH_SYM_FUNCTIONS = frozenset(
    {"torch.sym_int", "torch.sym_float", "torch.sym_max", "torch.sym_min", "torch.sym_not", "torch.sym_sqrt"}
    | {"torch.sym_ite", "torch._sym_sqrt", "torch.sym_sum", "math.ceil", "math.floor", "math.trunc"}
)


# ---------------------------------------------------------------------------------------------- TorchScript


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` of an attribute chain rooted at a name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def script_definitions(trees: dict[str, ast.Module]) -> tuple[set[str], set[str]]:
    """The qualified names (``__torch__.a.b.C``) and method names defined by a TorchScript archive's parsed code
    files, keyed by member name (``archive/code/__torch__/a/b.py``)."""
    qualified: set[str] = set()
    methods: set[str] = set()
    for member, tree in trees.items():
        module = _module_of(member)
        for node in tree.body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef):
                qualified.add(f"{module}.{node.name}")
            if isinstance(node, ast.ClassDef):
                methods |= {f.name for f in node.body if isinstance(f, ast.FunctionDef)}
    return qualified, methods


def _module_of(member: str) -> str:
    path = member.split("/code/", 1)[-1].removesuffix(".py")
    return path.replace("/", ".")


def script_code_problems(files: dict[str, str]) -> Iterator[str]:
    """Each call of a TorchScript archive's code that no allowlist holds, as ``"<member>: calls X"``.

    Calls are of four kinds: ``torch.X``/``ops.ns.X`` operators, functions and classes the archive itself
    defines (``__torch__...``, also through a local alias), methods of its classes (``(self.layer).forward``),
    and a few builtins; anything else (imports, ``fork``, ``torch.classes``, ``_C``) is refused.
    """
    trees: dict[str, ast.Module] = {}
    for member, text in files.items():
        try:
            trees[member] = ast.parse(text)
        except SyntaxError as e:
            yield f"{member.rsplit('/code/', 1)[-1]}: does not parse ({e.msg}, line {e.lineno})"
            return
        except (RecursionError, MemoryError, ValueError) as e:  # nesting too deep for the parser, NUL bytes
            yield f"{member.rsplit('/code/', 1)[-1]}: does not parse ({type(e).__name__})"
            return
    defined, methods = script_definitions(trees)
    for member, tree in trees.items():
        try:
            found = list(_module_problems(tree, defined, methods))
        except RecursionError:
            found = ["nests too deeply to be read"]
        for problem in found:
            yield f"{member.rsplit('/code/', 1)[-1]}: {problem}"


def _module_problems(tree: ast.Module, defined: set[str], methods: set[str]) -> Iterator[str]:
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom | ast.Global | ast.Nonlocal | ast.Lambda):
            yield f"holds a {type(node).__name__.lower()} statement"
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = _dotted(node.value)
            if name and name.startswith("__torch__."):
                aliases[node.targets[0].id] = name
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in _ROOTS and id(node) not in inner:
            yield f"uses {node.id} as a value"  # getattr(torch, "from_file") would reach any operator
        if isinstance(node, ast.Attribute) and id(node) not in inner:  # whole chains only: torch.ops.aten.x
            name = _dotted(node)
            if name and (problem := _reference_problem(name, defined)):
                yield problem
        if isinstance(node, ast.Call):
            problem = _call_problem(node.func, defined, methods, aliases)
            if problem:
                yield problem


#: Names that reach operators when used as values.
_ROOTS = frozenset({"torch", "ops"})


def _is_operator(name: str) -> bool:
    """Whether ``aten::name`` exists (a method of that name on a tensor would call it)."""
    import torch

    try:
        getattr(torch.ops.aten, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def _reference_problem(name: str, defined: set[str]) -> str | None:
    """A dotted name anywhere in the code (called or not): ``torch.X`` and ``ops.ns.X`` must be allowed."""
    parts = name.split(".")
    if "_C" in parts or "classes" in parts[:3]:
        return f"refers to {name}"
    if parts[0] == "torch":
        if len(parts) == 2:
            ok = parts[1] in ATEN_OPS or parts[1] in TORCH_VALUES
            return None if ok else f"calls the operator torch.{parts[1]}"
        if len(parts) >= 4 and parts[1] == "ops":
            return None if op_allowed(parts[2], parts[3]) else f"calls the operator {parts[2]}::{parts[3]}"
        return f"refers to {name}"
    if parts[0] == "ops":
        if len(parts) < 3:
            return f"refers to {name}"
        return None if op_allowed(parts[1], parts[2]) else f"calls the operator {parts[1]}::{parts[2]}"
    if parts[0] == "__torch__":
        known = any(name == d or name.startswith(d + ".") for d in defined)
        return None if known else f"refers to {name}, which the archive does not define"
    return None


def _call_problem(func: ast.expr, defined: set[str], methods: set[str], aliases: dict[str, str]) -> str | None:
    if isinstance(func, ast.Name):
        if func.id in SCRIPT_BUILTINS:
            return None
        target = aliases.get(func.id)
        if target is None:
            return f"calls {func.id}(), which is not an allowed function"
        return _reference_problem(target, defined)
    if isinstance(func, ast.Attribute):
        name = _dotted(func)
        if name and name.split(".")[0] in ("torch", "ops", "__torch__"):
            return None  # checked as a reference
        if func.attr in ATEN_OPS or func.attr in PRIM_OPS:
            return None  # a tensor or list method of the allowlist
        if func.attr in methods and not _is_operator(func.attr):
            return None  # a method of the archive's own classes (prim::CallMethod), not an operator's name
        if func.attr in methods:
            return f"calls the method {func.attr}(), which is also an operator's name"
        return f"calls the method {func.attr}(), which neither the archive nor the allowlist defines"
    return f"calls {ast.unparse(func)[:60]}, which is not a named function"
