// The fused RRDB's "sliced" algorithm, device-generic: convolutions through ATen (cuDNN on CUDA) on
// channel-prefix views of the shared NHWC block buffers, the elementwise work between them through
// a Backend (the CUDA kernels of rrdb_kernels.cu, or their C++ loop twins in rrdb_cpu.cpp: the CPU op
// is this algorithm too, so CPU tests check the CUDA path's glue):
//   forward:  conv_k without bias -> epilogue writes lrelu(y + b) into slice k of the buffer; conv5's
//             epilogue writes x + 0.2 (y + b) straight into the next block's buffer prefix (block 3:
//             x0 + 0.2 (x + 0.2 (y + b)), the RRDB output). With a backend that has fused convs
//             (rrdb_fwd(cutlass=True)): convs 1..4 write lrelu(conv + b) into their slice in one
//             kernel, and conv5 writes x + 0.2 (conv + b) in one kernel, into the next buffer (blocks
//             1-2) or a temporary rdb3 (block 3), then one elementwise kernel out = x0 + 0.2 rdb3 (the
//             conv kernel's epilogue has one source tensor, the RRDB output needs two).
//   backward: each conv's data gradient D_k (over the prefix it read) is kept, and the gather of
//             slice j sums D_{j+1..5}[slice j] (+ residual paths), applies the LeakyReLU derivative
//             from the saved output's sign and reduces the bias gradient in the same pass: no add
//             kernels and no separate bias reductions (cuDNN/ATen expose no accumulating dgrad, so
//             accumulating in place would cost one add kernel per conv).
//             Weight gradients: cuDNN (tensor cores for bf16/fp16, TF32 for fp32 when enabled).
//             With a backend that has dgrad / wgrad on the views (rrdb_*(cutlass=True)): one gradient
//             buffer per block, each dgrad adds in place into its prefix (beta 1), so a slice's
//             gather has one source; wgrad reads the activation prefix (dense_block_bwd_accumulating).
//             fp32_param_grads (the op was given fp32 master parameters): the wgrad writes its fp32
//             accumulation as the weight gradient (dw_fp32), the fp32 bias accumulator is returned
//             as it is; ATen / declined wgrads are cast.
// Allocation only through PyTorch's caching allocator, no host synchronisation: CUDA-graph capturable.
#include <ATen/record_function.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <functional>

#include "../common.h"
#include "rrdb.h"
#include "rrdb_sliced.h"

namespace gansr {
namespace rrdb {

namespace {

// profiler scopes (names "rrdb::..."): every backend call and each dense block, so CPU profiles of
// the emulated backend count the launches the CUDA backend makes (tests/test_rrdb_launches.py)
#define RRDB_SCOPE(name) RECORD_FUNCTION("rrdb::" name, std::vector<c10::IValue>())

// fused convs (fprop, dgrad, wgrad) the backend declined at run time (CUTLASS can_implement /
// alignment): each ran through ATen instead; read (and reset) through gansr::rrdb_cutlass_fallbacks
std::atomic<int64_t> fused_conv_fallbacks{0};

int64_t read_fused_conv_fallbacks(bool reset) {
  return reset ? fused_conv_fallbacks.exchange(0) : fused_conv_fallbacks.load();
}

at::Tensor nhwc(const at::Tensor& t) { return t.contiguous(at::MemoryFormat::ChannelsLast); }

// byte pointer to channel `c0` of an NHWC tensor's first pixel
const void* at_channel(const at::Tensor& t, int64_t c0) {
  return static_cast<const char*>(t.const_data_ptr()) + c0 * t.element_size();
}
void* at_channel_mut(at::Tensor& t, int64_t c0) { return static_cast<char*>(t.data_ptr()) + c0 * t.element_size(); }

// pixel stride of a whole channels_last-contiguous tensor (size(1), also when size-1 dims make
// stride() ambiguous); slices are addressed by channel offsets into such tensors, never as views
int64_t pixel_stride(const at::Tensor& t) { return t.size(1); }

// the problem size of a fused conv's argument block (rrdb_args.h)
template <typename Args>
void set_problem(Args& a, const Dims& d, int64_t cin, int64_t cout) {
  a.N = (int)d.N;
  a.H = (int)d.H;
  a.W = (int)d.W;
  a.cin = (int)cin;
  a.cout = (int)cout;
}

// Weights keep their own layout: a channels_last model's weights reach the convolution as they are
// (a .contiguous() here cost a copy to OIHW, and the conv's own copy back, per conv and pass).
// Biases are read through raw pointers by the kernels, so they must be dense.
std::vector<at::Tensor> with_dense_biases(at::TensorList params) {
  std::vector<at::Tensor> out(params.begin(), params.end());
  for (size_t i = 1; i < out.size(); i += 2) out[i] = out[i].contiguous();
  return out;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sliced_fwd(const at::Tensor& x_in, at::TensorList params_in,
                                                                      const Backend& be) {
  const Dims d = check_fwd_inputs(x_in, params_in, "gansr::rrdb_fwd");
  const DType dt = kernel_dtype(x_in.scalar_type());
  const std::vector<at::Tensor> params = with_dense_biases(params_in);
  const auto opts = x_in.options();
  const int64_t Ct = d.channels(), M = d.N * d.H * d.W;
  at::Tensor bufs[kBlocks];
  for (auto& b : bufs) b = new_nhwc(d.N, Ct, d.H, d.W, opts);
  at::Tensor out = new_nhwc(d.N, d.nf, d.H, d.W, opts);
  bufs[0].narrow(1, 0, d.nf).copy_(x_in);
  at::Tensor rdb3;  // dense block 3's output, when its conv5 ran fused
  for (int b = 0; b < kBlocks; ++b) {
    RRDB_SCOPE("dense_block_fwd");
    at::Tensor& buf = bufs[b];
    for (int k = 1; k <= kConvs; ++k) {
      if (k < kConvs && be.has_fused_conv(dt)) {
        const at::Tensor w_krsc = weight(params, b, k).contiguous(at::MemoryFormat::ChannelsLast);
        ConvBiasActArgs ca{};
        ca.x = buf.const_data_ptr();  // the channel prefix conv_k reads
        ca.x_stride = Ct;
        ca.w = w_krsc.const_data_ptr();
        ca.bias = bias(params, b, k).const_data_ptr();
        ca.out = at_channel_mut(buf, d.cin(k));  // its slice of the same buffer
        ca.out_stride = Ct;
        set_problem(ca, d, d.cin(k), d.gc);
        ca.slope = kSlope;
        {
          RRDB_SCOPE("fused_conv");
          if (be.conv_bias_lrelu(dt, ca)) continue;
        }
        ++fused_conv_fallbacks;
      }
      if (k == kConvs && be.has_fused_conv(dt)) {
        const at::Tensor w_krsc = weight(params, b, k).contiguous(at::MemoryFormat::ChannelsLast);
        const bool last = b + 1 == kBlocks;
        // block 3: rdb3 = x + 0.2 (conv + b) into a temporary; the RRDB's own residual follows below
        if (last) rdb3 = new_nhwc(d.N, d.nf, d.H, d.W, opts);
        ConvBiasResidualArgs ra{};
        ra.x = buf.const_data_ptr();  // conv5 reads the whole buffer
        ra.x_stride = Ct;
        ra.w = w_krsc.const_data_ptr();
        ra.bias = bias(params, b, k).const_data_ptr();
        ra.r1 = buf.const_data_ptr();  // the block input, channels [0, nf)
        ra.r1_stride = Ct;
        ra.s1 = kResScale;
        ra.out = last ? rdb3.data_ptr() : bufs[b + 1].data_ptr();  // or straight into the next block's prefix
        ra.out_stride = last ? d.nf : Ct;
        set_problem(ra, d, Ct, d.nf);
        {
          RRDB_SCOPE("fused_conv");
          if (be.conv_bias_residual(dt, ra)) continue;
        }
        ++fused_conv_fallbacks;
        rdb3 = at::Tensor();
      }
      at::Tensor y = nhwc(conv3x3(buf.narrow(1, 0, d.cin(k)), weight(params, b, k), c10::nullopt));
      EpilogueArgs a{};
      a.y = y.const_data_ptr();
      a.y_stride = y.size(1);
      a.bias = bias(params, b, k).const_data_ptr();
      a.M = M;
      a.slope = kSlope;
      if (k < kConvs) {
        a.C = (int)d.gc;
        a.act = true;
        a.out = at_channel_mut(buf, d.cin(k));
        a.out_stride = Ct;
      } else {
        a.C = (int)d.nf;
        a.r1 = buf.const_data_ptr();  // the block input, channels [0, nf)
        a.r1_stride = Ct;
        a.s1 = kResScale;
        if (b + 1 < kBlocks) {
          a.out = bufs[b + 1].data_ptr();  // straight into the next block's prefix
          a.out_stride = Ct;
        } else {
          a.r2 = bufs[0].const_data_ptr();  // the RRDB input
          a.r2_stride = Ct;
          a.s2 = kResScale;
          a.out = out.data_ptr();
          a.out_stride = d.nf;
        }
      }
      RRDB_SCOPE("epilogue");
      be.epilogue(dt, a);
    }
  }
  if (rdb3.defined()) {
    // the RRDB's residual, out = x0 + 0.2 rdb3: a weighted sum of two slices, which the gather kernel
    // computes (no LeakyReLU mask, no bias gradient); one elementwise launch, as the two-residual
    // epilogue it replaces
    GatherArgs g{};
    g.src[0] = bufs[0].const_data_ptr();  // x0, channels [0, nf) of the first buffer
    g.src_stride[0] = Ct;
    g.src_scale[0] = 1.0;
    g.src[1] = rdb3.const_data_ptr();
    g.src_stride[1] = d.nf;
    g.src_scale[1] = kResScale;
    g.nsrc = 2;
    g.slope = kSlope;
    g.out = out.data_ptr();
    g.out_stride = d.nf;
    g.M = M;
    g.C = (int)d.nf;
    RRDB_SCOPE("epilogue");
    be.gather(dt, g);
  }
  return {out, bufs[0], bufs[1], bufs[2]};
}

namespace {

struct Source {
  const at::Tensor* t;
  int64_t c0;
  double scale;
};

// Where a gather's bias gradient goes: `acc` (a view of the zeroed accumulator; null: none). With
// `deterministic`, the kernel writes one partial row per CUDA block instead of float atomics and the
// rows are summed here by ATen, in a fixed order (torch.use_deterministic_algorithms).
struct BiasSink {
  at::Tensor* acc = nullptr;
  bool deterministic = false;
};

// One gather (rrdb_args.h): out (and out2 = s2 * out) from the sum of sources, LeakyReLU-masked by
// the slice of `act` starting at act_c0 when act is given, bias gradient into `bias`.
struct GatherCall {
  std::vector<Source> srcs;
  const at::Tensor* act = nullptr;
  int64_t act_c0 = 0;
  at::Tensor* out = nullptr;
  at::Tensor* out2 = nullptr;
  double s2 = 0.0;
  BiasSink bias;
};

void gather(const Backend& be, DType dt, const GatherCall& g, int64_t M) {
  GatherArgs a{};
  TORCH_CHECK(g.srcs.size() <= (size_t)kMaxSources, "gansr::rrdb_bwd: too many gradient sources");
  for (size_t i = 0; i < g.srcs.size(); ++i) {
    a.src[i] = at_channel(*g.srcs[i].t, g.srcs[i].c0);
    a.src_stride[i] = pixel_stride(*g.srcs[i].t);
    a.src_scale[i] = g.srcs[i].scale;
  }
  a.nsrc = (int)g.srcs.size();
  if (g.act) {
    a.act = at_channel(*g.act, g.act_c0);
    a.act_stride = pixel_stride(*g.act);
  }
  a.slope = kSlope;
  a.out = g.out->data_ptr();
  a.out_stride = pixel_stride(*g.out);
  if (g.out2) {
    a.out2 = g.out2->data_ptr();
    a.out2_stride = pixel_stride(*g.out2);
    a.s2 = g.s2;
  }
  a.M = M;
  a.C = (int)g.out->size(1);
  at::Tensor partial;
  if (g.bias.acc && g.bias.deterministic) {
    a.partial_rows = gather_grid_x(M);
    partial = new_output({a.partial_rows, a.C}, g.bias.acc->options());
    a.bias_partial = partial.data_ptr();
  } else if (g.bias.acc) {
    a.bias_grad = g.bias.acc->data_ptr();
  }
  {
    RRDB_SCOPE("gather");
    be.gather(dt, a);
  }
  const int64_t rows_dim = 0;
  if (partial.defined()) at::sum_out(*g.bias.acc, partial, at::IntArrayRef(rows_dim));  // second pass, fixed order
}

}  // namespace

namespace {

// One dense block's backward through the backend's dgrad / wgrad (Backend::has_fused_bwd): one
// gradient buffer G shaped like the activation buffer. conv5's dgrad writes G[:, :Ct]; for k = 4..1
// slice k of G is complete (convs k+1..5 added to it), so its gather (lrelu', bias gradient) gives
// conv_k's output gradient gk, whose dgrad adds into G[:, :cin(k)] (beta 1) and whose wgrad reads
// the activation prefix in place. No per-conv data gradients, no prefix copies; returns G (its
// first nf channels: the block input's gradient from the convs). fp32_dw: the wgrads write float32
// gradients (ConvWgradArgs.dw_fp32) with one workspace for the block's five, sized by the largest.
at::Tensor dense_block_bwd_accumulating(const Backend& be, DType dt, const Dims& d, const at::Tensor& buf,
                                        const at::Tensor& g5, at::TensorList params, int b, bool need_param_grads,
                                        bool fp32_dw, std::vector<at::Tensor>& grad_w,
                                        const std::function<BiasSink(int, int)>& bias_sink) {
  const int64_t Ct = d.channels(), M = d.N * d.H * d.W;
  const auto opts = buf.options();
  at::Tensor G = new_nhwc(d.N, Ct, d.H, d.W, opts);
  auto wgrad_args = [&](int k) {
    ConvWgradArgs wa{};
    set_problem(wa, d, d.cin(k), k == kConvs ? d.nf : d.gc);
    wa.dw_fp32 = fp32_dw;
    return wa;
  };
  at::Tensor workspace;
  if (need_param_grads && fp32_dw) {
    size_t bytes = 0;
    for (int k = 1; k <= kConvs; ++k) bytes = std::max(bytes, be.wgrad_workspace(dt, wgrad_args(k)));
    if (bytes > 0) workspace = at::empty({(int64_t)bytes}, opts.dtype(at::kByte));
  }
  for (int k = kConvs; k >= 1; --k) {
    const int64_t cin = d.cin(k), cout = k == kConvs ? d.nf : d.gc;
    at::Tensor gk = g5;
    if (k < kConvs) {
      gk = new_nhwc(d.N, d.gc, d.H, d.W, opts);
      gather(be, dt, {.srcs = {{&G, cin, 1.0}}, .act = &buf, .act_c0 = cin, .out = &gk, .bias = bias_sink(b, k)}, M);
    }
    const at::Tensor& w = weight(params, b, k);
    const at::Tensor w_krsc = w.contiguous(at::MemoryFormat::ChannelsLast);
    const double beta = k == kConvs ? 0.0 : 1.0;  // conv5 reads (and so writes) all Ct channels first
    ConvDgradArgs da{};
    da.dy = gk.const_data_ptr();
    da.dy_stride = cout;
    da.w = w_krsc.const_data_ptr();
    da.dx = G.data_ptr();  // the prefix of G conv_k read
    da.dx_stride = Ct;
    set_problem(da, d, cin, cout);
    da.beta = beta;
    bool done;
    {
      RRDB_SCOPE("cutlass_dgrad");
      done = be.conv_dgrad(dt, da);
    }
    if (!done) {
      ++fused_conv_fallbacks;
      at::Tensor dk = std::get<0>(conv3x3_backward(gk, buf.narrow(1, 0, cin), w, {true, false, false}));
      at::Tensor prefix = G.narrow(1, 0, cin);
      beta == 0.0 ? prefix.copy_(dk) : prefix.add_(dk);
    }
    if (!need_param_grads) continue;
    const auto dw_opts = opts.dtype(fp32_dw ? at::kFloat : buf.scalar_type());
    at::Tensor dw = at::empty({cout, cin, 3, 3}, dw_opts.memory_format(at::MemoryFormat::ChannelsLast));
    ConvWgradArgs wa = wgrad_args(k);
    wa.dy = gk.const_data_ptr();
    wa.dy_stride = cout;
    wa.x = buf.const_data_ptr();  // the activation prefix conv_k read
    wa.x_stride = Ct;
    wa.dw = dw.data_ptr();
    if (workspace.defined()) {
      wa.workspace = workspace.data_ptr();
      wa.workspace_bytes = (size_t)workspace.numel();
    }
    {
      RRDB_SCOPE("cutlass_wgrad");
      done = be.conv_wgrad(dt, wa);
    }
    if (!done) {
      ++fused_conv_fallbacks;
      dw = std::get<1>(conv3x3_backward(gk, buf.narrow(1, 0, cin), w, {false, true, false}));
      if (fp32_dw) dw = dw.to(at::kFloat);
    }
    grad_w[kConvs * b + k - 1] = weight_grad_like(dw, w);
  }
  return G;
}

}  // namespace

BwdResult sliced_bwd(const at::Tensor& grad_out, const at::Tensor& buf1, const at::Tensor& buf2,
                     const at::Tensor& buf3, at::TensorList params, bool need_param_grads, const Backend& be,
                     bool fp32_param_grads) {
  const Dims d = check_bwd_inputs(grad_out, buf1, buf2, buf3, params);
  const auto st = grad_out.scalar_type();
  const DType dt = kernel_dtype(st);
  const auto opts = grad_out.options();
  const bool det = at::globalContext().deterministicAlgorithms();
  const at::Tensor bufs[kBlocks] = {nhwc(buf1), nhwc(buf2), nhwc(buf3)};
  const int64_t M = d.N * d.H * d.W;
  const at::Tensor go = nhwc(grad_out);
  std::vector<at::Tensor> grad_w;
  // every bias gradient accumulates (in the gathers) into one zeroed buffer
  const at::Tensor bias_acc =
      need_param_grads ? at::zeros({kBlocks * (d.nf + 4 * d.gc)}, opts.dtype(compute_type(st))) : at::Tensor();
  std::vector<at::Tensor> bias_views(kBlocks * kConvs);
  auto bias_sink = [&](int b, int k) -> BiasSink {
    if (!need_param_grads) return {};
    at::Tensor& v = bias_views[kConvs * b + k - 1];
    v = bias_acc.narrow(0, bias_offset(d, b, k), k == kConvs ? d.nf : d.gc);
    return {&v, det};
  };

  // gradient of rdb3's output (gy) and of its conv5 output (g5 = 0.2 gy, plus conv5's bias gradient)
  at::Tensor gy = new_nhwc(d.N, d.nf, d.H, d.W, opts);
  at::Tensor g5 = new_nhwc(d.N, d.nf, d.H, d.W, opts);
  gather(be, dt,
         {.srcs = {{&go, 0, kResScale}}, .out = &gy, .out2 = &g5, .s2 = kResScale,
          .bias = bias_sink(kBlocks - 1, kConvs)},
         M);
  at::Tensor grad_x;
  if (need_param_grads) grad_w.resize(kBlocks * kConvs);
  const bool fused_bwd = be.has_fused_bwd(dt);
  for (int b = kBlocks - 1; b >= 0; --b) {
    RRDB_SCOPE("dense_block_bwd");
    const at::Tensor& buf = bufs[b];
    at::Tensor D[kConvs + 1];  // D[k]: data gradient of conv_k over its input prefix (cin(k) channels)
    std::vector<Source> srcs;  // the block input's gradient: every conv read it, plus the residual path
    if (fused_bwd) {
      D[0] = dense_block_bwd_accumulating(be, dt, d, buf, g5, params, b, need_param_grads, fp32_param_grads, grad_w,
                                          bias_sink);
      srcs.push_back({&D[0], 0, 1.0});
    }
    for (int k = kConvs; k >= 1 && !fused_bwd; --k) {
      at::Tensor gk;
      if (k == kConvs) {
        gk = g5;
      } else {
        gk = new_nhwc(d.N, d.gc, d.H, d.W, opts);
        std::vector<Source> srcs;
        for (int i = k + 1; i <= kConvs; ++i) srcs.push_back({&D[i], d.cin(k), 1.0});
        gather(be, dt, {.srcs = srcs, .act = &buf, .act_c0 = d.cin(k), .out = &gk, .bias = bias_sink(b, k)}, M);
      }
      auto [dk, dwk, unused] =
          conv3x3_backward(gk, buf.narrow(1, 0, d.cin(k)), weight(params, b, k), {true, need_param_grads, false});
      D[k] = nhwc(dk);
      if (need_param_grads) {
        if (fp32_param_grads) dwk = dwk.to(at::kFloat);
        grad_w[kConvs * b + k - 1] = weight_grad_like(dwk, weight(params, b, k));
      }
    }
    if (!fused_bwd)
      for (int i = 1; i <= kConvs; ++i) srcs.push_back({&D[i], 0, 1.0});
    srcs.push_back({&gy, 0, 1.0});
    if (b > 0) {
      at::Tensor gy_prev = new_nhwc(d.N, d.nf, d.H, d.W, opts);
      at::Tensor g5_prev = new_nhwc(d.N, d.nf, d.H, d.W, opts);
      gather(be, dt,
             {.srcs = srcs, .out = &gy_prev, .out2 = &g5_prev, .s2 = kResScale, .bias = bias_sink(b - 1, kConvs)},
             M);
      gy = gy_prev;
      g5 = g5_prev;
    } else {
      srcs.push_back({&go, 0, 1.0});  // the RRDB's own residual
      grad_x = new_nhwc(d.N, d.nf, d.H, d.W, opts);
      gather(be, dt, {.srcs = srcs, .out = &grad_x}, M);
    }
  }
  // fp32_param_grads: the accumulator as it is when it is float (bf16 / fp16 / fp32 activations)
  const auto bias_st = fp32_param_grads ? at::kFloat : st;
  return {grad_x, grad_w, need_param_grads ? bias_acc.to(bias_st) : no_bias_grads(opts.dtype(bias_st))};
}

TORCH_LIBRARY_FRAGMENT(gansr, m) {
  // catch-all kernel (no tensor arguments): how many fused convs fell back to the ATen path
  m.def("rrdb_cutlass_fallbacks(bool reset=False) -> int", &read_fused_conv_fallbacks);
}

}  // namespace rrdb
}  // namespace gansr
