#!/usr/bin/env bash
# Vendors ONNX's backend node tests for the quantization, integer convolution, layer
# normalization and the importer's float operators, and the float Conv2d/pooling/softmax/ReLU cases of its pytorch-converted
# suite, into tests/data/onnx/, from the PyPI wheel onnx==1.22.0 (the last release that ships the
# test data; Apache-2.0, its LICENSE and NOTICE are copied beside the data).
# Reproducible: the wheel is pinned and the file list below is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.22.0
DEST=tests/data/onnx
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: "onnx==$VERSION" -d "$TMP"
WHEEL=$(ls "$TMP"/onnx-"$VERSION"-*.whl | head -n1)
PATTERNS=(test_quantizelinear test_dequantizelinear test_dynamicquantizelinear
          test_qlinearmatmul test_qlinearconv test_matmulinteger test_convinteger
          test_layer_normalization
          # Float operators the importer lists (tests/onnx.rs runs every case of them).
          test_abs test_add test_averagepool_2d test_basic_conv test_batchnorm test_clip
          test_concat test_conv_with test_convtranspose test_depthtospace test_div
          test_dropout test_erf test_exp test_flatten test_gelu test_gemm
          test_globalaveragepool test_globalmaxpool test_hardsigmoid test_hardswish
          test_identity test_leakyrelu test_log test_matmul_ test_maxpool_2d test_mul
          test_neg test_pow test_reciprocal test_reduce_mean test_reduce_max test_reduce_sum test_relu
          test_reshape test_resize test_sigmoid test_slice test_softmax test_sqrt
          test_squeeze test_sub test_tanh test_transpose test_unsqueeze test_constant_pad
          test_edge_pad test_reflect_pad test_upsample test_shape test_constantofshape
          test_cast_FLOAT_to_FLOAT16 test_cast_FLOAT16_to_FLOAT test_gather_0 test_gather_1
          test_gather_2d test_gather_negative test_celu test_elu test_selu test_softplus
          test_softsign test_mish test_prelu test_sum test_mean test_max_ test_min_ test_split
          test_lrn test_instancenorm test_reduce_l1 test_reduce_l2 test_reduce_min
          test_group_normalization test_less test_greater test_equal test_where test_not
          test_and test_or test_xor test_lstm test_gru test_averagepool_1d
          test_maxpool_1d test_tile test_spacetodepth test_argmax test_argmin)
# Left out of those prefixes: other operators that share them (SplitToSequence too),
# training-mode and random cases.
# (test_log also brings test_logsoftmax; test_log_softmax are training cases.)
EXCLUDE='test_log_softmax|training|_random|split_to_sequence'
# Float layers exported from PyTorch. test_MaxPool2d_stride_padding_dilation is left out:
# its input alone is 4 MB.
TORCH=(test_Conv2d test_AvgPool2d test_MaxPool2d/ test_Softmax/ test_softmax_lastdim/
       test_ReLU/ test_Conv1d test_AvgPool1d test_MaxPool1d)
ARGS=()
for p in "${PATTERNS[@]}"; do ARGS+=("onnx/backend/test/data/node/${p}*"); done
for p in "${TORCH[@]}"; do ARGS+=("onnx/backend/test/data/pytorch-converted/${p}*"); done
(cd "$TMP" && unzip -q -o "$WHEEL" "${ARGS[@]}" "onnx-$VERSION.dist-info/licenses/*")
rm -rf "$DEST"
mkdir -p "$DEST/node" "$DEST/pytorch-converted"
for d in "$TMP"/onnx/backend/test/data/node/*; do
  if ! basename "$d" | grep -Eq "$EXCLUDE"; then cp -r "$d" "$DEST/node/"; fi
done
cp -r "$TMP"/onnx/backend/test/data/pytorch-converted/* "$DEST/pytorch-converted/"
cp "$TMP/onnx-$VERSION.dist-info/licenses/LICENSE" "$DEST/LICENSE"
cp "$TMP/onnx-$VERSION.dist-info/licenses/NOTICE" "$DEST/NOTICE"
cat > "$DEST/README.md" <<MD
# ONNX backend node tests (vendored)

Copied unchanged from the PyPI wheel \`onnx==$VERSION\`, directories
\`onnx/backend/test/data/node/\` (quantization and integer convolution operators, layer
normalization, and the float operators the importer lists) and
\`onnx/backend/test/data/pytorch-converted/\` (float Conv2d, pooling, softmax, ReLU), by
\`tools/vendor_onnx_tests.sh\`. Each test holds
\`model.onnx\` (one operator with its attributes) and \`test_data_set_0/{input,output}_N.pb\`
(serialized \`TensorProto\`s). Copyright the ONNX Project Contributors, Apache License 2.0:
see LICENSE and NOTICE in this directory. Used by \`tests/onnx.rs\`.
MD
echo "vendored $(ls "$DEST/node" "$DEST/pytorch-converted" | wc -l) test directories into $DEST"
