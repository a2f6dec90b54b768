"""TensorRT's ONNX parser support list, kept as data so the static readiness check needs no TensorRT.

Source: onnx/onnx-tensorrt ``docs/operators.md`` for TensorRT 10.15 ("supports operators in the
inclusive range of opset 9 to opset 24"); the TensorRT 10.0/10.1 copy of the same file gives opsets
9-20. Operators marked ``N`` there are in :data:`UNSUPPORTED_OPS` so the report can say "listed as
unsupported" rather than "unknown". Update both sets together when a new table is read.
"""

from __future__ import annotations

TRT_VERSION_OF_TABLE = "10.15"
SOURCE = "https://github.com/onnx/onnx-tensorrt/blob/main/docs/operators.md (TensorRT 10.15)"

# Opsets every TensorRT 10.x parser reads: 10.0 parses 9-20, 10.15 parses 9-24. ltzoo exports at
# 17-20 so that the oldest TensorRT 10 still builds the graph.
PARSER_OPSET_RANGE = (9, 20)

SUPPORTED_OPS: frozenset[str] = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool
    BatchNormalization BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape
    Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum
    Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm
    GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
    GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish Hardmax Identity If
    ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log
    LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
    MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
    ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
    RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
    ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence
    RMSNormalization RNN RoiAlign RotaryEmbedding Round STFT ScaledTanh Scan Scatter ScatterElements
    ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign
    SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh TensorScatter ThresholdedRelu Tile TopK
    Transpose Trilu Unsqueeze Upsample Where Xor
    """.split()
)

UNSUPPORTED_OPS: frozenset[str] = frozenset(
    """
    AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor Col2Im CenterCropPad
    Compress ConcatFromSequence ConvInteger DFT Det DynamicQuantizeLinear ImageDecoder MatMulInteger
    MaxRoiPool MaxUnpool MelWeightMatrix Multinomial NegativeLogLikelihoodLoss Optional
    OptionalGetElement OptionalHasElement QLinearConv QLinearMatMul RegexFullMatch SequenceAt
    SequenceConstruct SequenceEmpty SequenceErase SequenceInsert SequenceLength SequenceMap
    SoftmaxCrossEntropyLoss SplitToSequence StringConcat StringNormalizer StringSplit
    TfIdfVectorizer Unique
    """.split()
)

# Inputs that the table says must be initializers / build-time constants: op -> input indices.
# (The 8.x tables also required Conv weights to be initializers; 10.15 no longer does, so Q/DQ'd
# weights are fine.)
CONSTANT_INPUTS: dict[str, tuple[int, ...]] = {
    "CumSum": (1,),  # axis
    "Dropout": (2,),  # training_mode must be a constant False
    "OneHot": (1,),  # depth
    "ReduceL1": (1,),
    "ReduceL2": (1,),
    "ReduceLogSum": (1,),
    "ReduceLogSumExp": (1,),
    "ReduceMax": (1,),
    "ReduceMean": (1,),
    "ReduceMin": (1,),
    "ReduceProd": (1,),
    "ReduceSum": (1,),
    "ReduceSumSquare": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
}

# Q/DQ are how TensorRT 11 receives int8 ("quantized types" only via explicit quantization), and the
# table restricts them to a zero point of 0.
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
