// Trains a small convolutional autoencoder on synthetic 28x28 images, with xconv's layers and
// hand-written backward passes, a hand-written Adam optimiser and nothing else.
//
//   encoder: Conv2d(1, 16, 3, stride 2, padding 1) + ReLU        1x28x28 -> 16x14x14
//            Conv2d(16, 32, 3, stride 2, padding 1) + ReLU       16x14x14 -> 32x7x7
//   decoder: ConvTranspose2d(32, 16, 3, stride 2, padding 1, output_padding 1) + ReLU -> 16x14x14
//            ConvTranspose2d(16, 1, 3, stride 2, padding 1, output_padding 1) + sigmoid -> 1x28x28
//   loss:    mean squared error between the input and its reconstruction
//
// The images are drawn on the fly: one to three filled rectangles and discs of random size,
// position and brightness on a black background. A fixed held-out batch measures the loss
// before and after training and is shown in the reconstruction grid.
//
// Usage: train_autoencoder [--steps N] [--quick] [--batch B] [--lr LR] [--seed S]
//                          [--min-drop F] [--out DIR]
// The full run is 4000 steps of 64 images (about a minute on two cores); --quick is 150 steps
// of 32. Writes DIR/loss.csv, DIR/loss.svg and DIR/reconstructions.pgm. Exits non-zero when the
// held-out loss did not fall by at least the factor F (10 for the full run, 2 for shorter runs).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <xconv/xconv.hpp>

namespace
{
    using tensor4 = xt::xtensor<float, 4>;
    constexpr std::size_t side = 28;

    // ------------------------------------------------------------------ synthetic data

    /// Draws one image of 1 to 3 filled rectangles and discs into img (side x side, row-major).
    void draw_image(float* img, std::mt19937& rng)
    {
        std::uniform_int_distribution<int> count(1, 3), kind(0, 1), pos(0, side - 1), extent(4, 13), radius(3, 8);
        std::uniform_real_distribution<float> brightness(0.4f, 1.0f);
        std::fill(img, img + side * side, 0.0f);
        const int n = count(rng);
        for (int s = 0; s < n; ++s)
        {
            const float v = brightness(rng);
            if (kind(rng) == 0)
            {
                const int y0 = pos(rng), x0 = pos(rng), h = extent(rng), w = extent(rng);
                for (int y = std::max(0, y0 - h / 2); y < std::min<int>(side, y0 - h / 2 + h); ++y)
                {
                    for (int x = std::max(0, x0 - w / 2); x < std::min<int>(side, x0 - w / 2 + w); ++x)
                    {
                        img[y * side + x] = std::max(img[y * side + x], v);
                    }
                }
            }
            else
            {
                const int cy = pos(rng), cx = pos(rng), r = radius(rng);
                for (int y = 0; y < static_cast<int>(side); ++y)
                {
                    for (int x = 0; x < static_cast<int>(side); ++x)
                    {
                        if ((y - cy) * (y - cy) + (x - cx) * (x - cx) <= r * r)
                        {
                            img[y * side + x] = std::max(img[y * side + x], v);
                        }
                    }
                }
            }
        }
    }

    tensor4 draw_batch(std::size_t batch, std::mt19937& rng)
    {
        tensor4 x(std::array<std::size_t, 4>{batch, 1, side, side});
        for (std::size_t n = 0; n < batch; ++n)
        {
            draw_image(x.data() + n * side * side, rng);
        }
        return x;
    }

    // ------------------------------------------------------------------ the model

    tensor4 relu(const tensor4& z)
    {
        return xt::maximum(z, 0.0f);
    }

    /// dL/dz for z -> relu(z), given dL/drelu(z).
    tensor4 relu_backward(const tensor4& grad, const tensor4& z)
    {
        return xt::where(z > 0.0f, grad, 0.0f);
    }

    tensor4 sigmoid(const tensor4& z)
    {
        return 1.0f / (1.0f + xt::exp(-z));
    }

    struct autoencoder
    {
        xconv::Conv2d<float> enc1, enc2;
        xconv::ConvTranspose2d<float> dec1, dec2;
        // Pre-activations of the last forward call, for the backward pass through the ReLUs.
        tensor4 z1, z2, z3, y;

        static xconv::conv2d_options down()
        {
            xconv::conv2d_options o;
            o.stride = 2;
            o.padding = 1;
            return o;
        }

        static xconv::conv_transpose2d_options up()
        {
            xconv::conv_transpose2d_options o;
            o.stride = 2;
            o.padding = 1;
            o.output_padding = 1;
            return o;
        }

        explicit autoencoder(std::mt19937_64& gen)
            : enc1(1, 16, 3, down(), true, gen)
            , enc2(16, 32, 3, down(), true, gen)
            , dec1(32, 16, 3, up(), true, gen)
            , dec2(16, 1, 3, up(), true, gen)
        {
        }

        const tensor4& forward(const tensor4& x)
        {
            z1 = enc1.forward(x);
            z2 = enc2.forward(relu(z1));
            z3 = dec1.forward(relu(z2));
            y = sigmoid(dec2.forward(relu(z3)));
            return y;
        }

        /// Backward pass for the last forward call, given dL/dy; accumulates the parameter gradients.
        void backward(const tensor4& grad_y)
        {
            tensor4 g = grad_y * y * (1.0f - y);  // through the sigmoid
            g = relu_backward(dec2.backward(g), z3);
            g = relu_backward(dec1.backward(g), z2);
            g = relu_backward(enc2.backward(g), z1);
            enc1.backward(g);
        }

        void zero_grad()
        {
            enc1.zero_grad();
            enc2.zero_grad();
            dec1.zero_grad();
            dec2.zero_grad();
        }

        std::vector<xconv::parameter<float>> parameters()
        {
            std::vector<xconv::parameter<float>> ps;
            for (auto* layer : {&enc1, &enc2})
            {
                for (auto& p : layer->parameters())
                {
                    ps.push_back(p);
                }
            }
            for (auto* layer : {&dec1, &dec2})
            {
                for (auto& p : layer->parameters())
                {
                    ps.push_back(p);
                }
            }
            return ps;
        }
    };

    /// Mean squared error and its gradient with respect to the prediction.
    float mse(const tensor4& prediction, const tensor4& target, tensor4* grad)
    {
        const tensor4 diff = prediction - target;
        const auto n = static_cast<float>(diff.size());
        if (grad != nullptr)
        {
            *grad = (2.0f / n) * diff;
        }
        return static_cast<float>(xt::sum(diff * diff)()) / n;
    }

    // ------------------------------------------------------------------ Adam

    /// Adam (Kingma & Ba) with bias correction; one first/second moment vector per parameter.
    class adam
    {
    public:
        explicit adam(float lr, float beta1 = 0.9f, float beta2 = 0.999f, float eps = 1e-8f)
            : m_lr(lr), m_beta1(beta1), m_beta2(beta2), m_eps(eps)
        {
        }

        void step(std::vector<xconv::parameter<float>>& params)
        {
            if (m_m.empty())
            {
                for (const auto& p : params)
                {
                    m_m.push_back(xt::zeros<float>({p.value.size()}));
                    m_v.push_back(xt::zeros<float>({p.value.size()}));
                }
            }
            ++m_t;
            const float c1 = 1.0f - std::pow(m_beta1, static_cast<float>(m_t));
            const float c2 = 1.0f - std::pow(m_beta2, static_cast<float>(m_t));
            for (std::size_t i = 0; i < params.size(); ++i)
            {
                auto& p = params[i];
                m_m[i] = m_beta1 * m_m[i] + (1.0f - m_beta1) * p.grad;
                m_v[i] = m_beta2 * m_v[i] + (1.0f - m_beta2) * p.grad * p.grad;
                p.value -= m_lr * (m_m[i] / c1) / (xt::sqrt(m_v[i] / c2) + m_eps);
            }
        }

    private:
        float m_lr, m_beta1, m_beta2, m_eps;
        long m_t = 0;
        std::vector<xt::xtensor<float, 1>> m_m, m_v;
    };

    // ------------------------------------------------------------------ output files

    void write_csv(const std::string& path, const std::vector<float>& losses)
    {
        std::ofstream f(path);
        f << "step,loss\n";
        for (std::size_t i = 0; i < losses.size(); ++i)
        {
            f << i + 1 << ',' << losses[i] << '\n';
        }
    }

    /// A log-scale line plot of the training loss (light) and its moving average (dark).
    void write_svg(const std::string& path, const std::vector<float>& losses)
    {
        const double W = 640, H = 360, left = 70, right = 20, top = 30, bottom = 50;
        const double pw = W - left - right, ph = H - top - bottom;
        const auto [lo_it, hi_it] = std::minmax_element(losses.begin(), losses.end());
        const double lo = std::floor(std::log10(static_cast<double>(*lo_it)));
        const double hi = std::ceil(std::log10(static_cast<double>(*hi_it)));
        const double span = std::max(hi - lo, 1.0);
        const auto n = static_cast<double>(std::max<std::size_t>(losses.size(), 2) - 1);
        auto px = [&](std::size_t i) { return left + pw * static_cast<double>(i) / n; };
        auto py = [&](double v) { return top + ph * (hi - std::log10(v)) / span; };

        std::ostringstream s;
        s << std::fixed << std::setprecision(1);
        s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 "
          << W << ' ' << H << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
        s << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
        s << "<text x=\"" << W / 2 << "\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">"
          << "Autoencoder training loss (MSE, log scale)</text>\n";
        for (double d = lo; d <= lo + span + 1e-9; d += 1)
        {
            const double y = top + ph * (hi - d) / span;
            s << "<line x1=\"" << left << "\" y1=\"" << y << "\" x2=\"" << left + pw << "\" y2=\"" << y
              << "\" stroke=\"#ddd\"/>\n";
            s << "<text x=\"" << left - 6 << "\" y=\"" << y + 4 << "\" text-anchor=\"end\">1e" << static_cast<int>(d) << "</text>\n";
        }
        for (int k = 0; k <= 4; ++k)
        {
            const auto label = std::max<std::size_t>(1, static_cast<std::size_t>(std::lround((n + 1) * k / 4.0)));
            s << "<text x=\"" << px(label - 1) << "\" y=\"" << top + ph + 18 << "\" text-anchor=\"middle\">"
              << label << "</text>\n";
        }
        s << "<line x1=\"" << left + pw - 190 << "\" y1=\"" << top + 16 << "\" x2=\"" << left + pw - 170 << "\" y2=\""
          << top + 16 << "\" stroke=\"#9ecae1\" stroke-width=\"2\"/>\n";
        s << "<text x=\"" << left + pw - 164 << "\" y=\"" << top + 20 << "\">loss of each batch</text>\n";
        s << "<line x1=\"" << left + pw - 190 << "\" y1=\"" << top + 34 << "\" x2=\"" << left + pw - 170 << "\" y2=\""
          << top + 34 << "\" stroke=\"#08519c\" stroke-width=\"2\"/>\n";
        s << "<text x=\"" << left + pw - 164 << "\" y=\"" << top + 38 << "\">moving average</text>\n";
        s << "<text x=\"" << left + pw / 2 << "\" y=\"" << H - 10 << "\" text-anchor=\"middle\">step</text>\n";
        s << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << ph
          << "\" fill=\"none\" stroke=\"#333\"/>\n";

        // At most about 1000 points per line keep the file small for long runs.
        const std::size_t stride = (losses.size() + 999) / 1000;
        s << "<polyline fill=\"none\" stroke=\"#9ecae1\" stroke-width=\"1\" points=\"";
        for (std::size_t i = 0; i < losses.size(); i += stride)
        {
            s << px(i) << ',' << py(losses[i]) << ' ';
        }
        s << "\"/>\n<polyline fill=\"none\" stroke=\"#08519c\" stroke-width=\"2\" points=\"";
        // Centred moving average over about 2% of the run, so that it does not lag behind.
        const std::size_t half = losses.size() / 100;
        std::vector<double> prefix(losses.size() + 1, 0.0);
        for (std::size_t i = 0; i < losses.size(); ++i)
        {
            prefix[i + 1] = prefix[i] + static_cast<double>(losses[i]);
        }
        for (std::size_t i = 0; i < losses.size(); i += stride)
        {
            const std::size_t a = i >= half ? i - half : 0, b = std::min(losses.size(), i + half + 1);
            s << px(i) << ',' << py((prefix[b] - prefix[a]) / static_cast<double>(b - a)) << ' ';
        }
        s << "\"/>\n</svg>\n";
        std::ofstream(path) << s.str();
    }

    /// A grid of images, `cols` per row, alternating rows of inputs and reconstructions, each
    /// pixel drawn `scale` times larger, written as a binary PGM.
    void write_grid(const std::string& path, const tensor4& inputs, const tensor4& outputs, std::size_t cols,
                    std::size_t scale)
    {
        const std::size_t count = inputs.shape()[0];
        const std::size_t rows = 2 * ((count + cols - 1) / cols);
        const std::size_t gap = 2 * scale, cell = side * scale;
        const std::size_t width = cols * cell + (cols + 1) * gap;
        const std::size_t height = rows * cell + (rows + 1) * gap + (rows / 2 - 1) * gap;
        std::vector<unsigned char> img(width * height, 96);
        for (std::size_t n = 0; n < count; ++n)
        {
            const std::size_t pair = n / cols, col = n % cols;
            for (std::size_t which = 0; which < 2; ++which)
            {
                const tensor4& src = which == 0 ? inputs : outputs;
                const std::size_t row = 2 * pair + which;
                const std::size_t oy = gap + row * (cell + gap) + pair * gap, ox = gap + col * (cell + gap);
                for (std::size_t y = 0; y < cell; ++y)
                {
                    for (std::size_t x = 0; x < cell; ++x)
                    {
                        const float v = std::clamp(src(n, 0, y / scale, x / scale), 0.0f, 1.0f);
                        img[(oy + y) * width + ox + x] = static_cast<unsigned char>(std::lround(v * 255.0f));
                    }
                }
            }
        }
        std::ofstream f(path, std::ios::binary);
        f << "P5\n" << width << ' ' << height << "\n255\n";
        f.write(reinterpret_cast<const char*>(img.data()), static_cast<std::streamsize>(img.size()));
    }

    // ------------------------------------------------------------------ progress

    void progress(bool tty, std::size_t step, std::size_t steps, float loss, double images_per_second)
    {
        const std::size_t width = 30, filled = width * step / steps;
        std::string bar(filled, '=');
        if (filled < width)
        {
            bar += '>';
            bar += std::string(width - filled - 1, ' ');
        }
        std::printf("%s[%s] step %5zu/%zu  loss %.5f  %7.0f images/s%s", tty ? "\r" : "", bar.c_str(), step, steps,
                    static_cast<double>(loss), images_per_second, tty ? "" : "\n");
        std::fflush(stdout);
    }

    struct arguments
    {
        std::size_t steps = 4000;
        std::size_t batch = 64;
        float lr = 2e-3f;
        std::uint64_t seed = 1;
        double min_drop = 10.0;
        bool min_drop_given = false;
        std::string out = ".";
    };

    [[noreturn]] void usage(const char* what)
    {
        std::fprintf(stderr,
                     "%s\nusage: train_autoencoder [--steps N] [--quick] [--batch B] [--lr LR] [--seed S] "
                     "[--min-drop F] [--out DIR]\n",
                     what);
        std::exit(2);
    }

    arguments parse(int argc, char** argv)
    {
        arguments a;
        bool short_run = false;
        for (int i = 1; i < argc; ++i)
        {
            const std::string k = argv[i];
            auto value = [&]() -> std::string {
                if (i + 1 >= argc)
                {
                    usage(("missing value after " + k).c_str());
                }
                return argv[++i];
            };
            if (k == "--quick")
            {
                a.steps = 150;
                a.batch = 32;
                short_run = true;
            }
            else if (k == "--steps")
            {
                a.steps = std::stoul(value());
                short_run = true;
            }
            else if (k == "--batch")
            {
                a.batch = std::stoul(value());
            }
            else if (k == "--lr")
            {
                a.lr = std::stof(value());
            }
            else if (k == "--seed")
            {
                a.seed = std::stoull(value());
            }
            else if (k == "--min-drop")
            {
                a.min_drop = std::stod(value());
                a.min_drop_given = true;
            }
            else if (k == "--out")
            {
                a.out = value();
            }
            else
            {
                usage(("unknown argument " + k).c_str());
            }
        }
        if (a.steps == 0 || a.batch == 0)
        {
            usage("--steps and --batch must be positive");
        }
        if (short_run && !a.min_drop_given)
        {
            a.min_drop = 2.0;
        }
        return a;
    }
}  // namespace

int main(int argc, char** argv)
{
    const arguments args = parse(argc, argv);
    const bool tty = isatty(STDOUT_FILENO) != 0;

    std::mt19937_64 init(args.seed);
    std::mt19937 data(static_cast<std::mt19937::result_type>(args.seed * 7919 + 17));
    std::mt19937 held_out_rng(12345);
    const tensor4 held_out = draw_batch(16, held_out_rng);

    autoencoder model(init);
    adam optimiser(args.lr);
    std::size_t count = 0;
    for (const auto& p : model.parameters())
    {
        count += p.value.size();
    }
    std::printf("conv autoencoder, %zu parameters; %zu steps of Adam (lr %g) on batches of %zu synthetic %zux%zu images\n",
                count, args.steps, static_cast<double>(args.lr), args.batch, side, side);

    const float start = mse(model.forward(held_out), held_out, nullptr);
    std::printf("held-out loss before training: %.5f\n", static_cast<double>(start));

    std::vector<float> losses;
    losses.reserve(args.steps);
    const auto t0 = std::chrono::steady_clock::now();
    auto last = t0;
    std::size_t last_step = 0;
    double rate = 0;
    const std::size_t every = tty ? 1 : std::max<std::size_t>(1, args.steps / 10);
    for (std::size_t step = 1; step <= args.steps; ++step)
    {
        const tensor4 x = draw_batch(args.batch, data);
        model.zero_grad();
        tensor4 grad;
        const float loss = mse(model.forward(x), x, &grad);
        model.backward(grad);
        auto params = model.parameters();  // views of the current parameter and gradient buffers
        optimiser.step(params);
        losses.push_back(loss);
        if (!std::isfinite(loss))
        {
            std::printf("\nthe loss diverged at step %zu\n", step);
            return 1;
        }

        if (step % every == 0 || step == args.steps)
        {
            const auto now = std::chrono::steady_clock::now();
            const double dt = std::chrono::duration<double>(now - last).count();
            if (dt > 0)
            {
                rate = static_cast<double>((step - last_step) * args.batch) / dt;
            }
            last = now;
            last_step = step;
            progress(tty, step, args.steps, loss, rate);
        }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (tty)
    {
        std::printf("\n");
    }

    const tensor4 reconstruction = model.forward(held_out);
    const float end = mse(reconstruction, held_out, nullptr);
    const double drop = static_cast<double>(start) / static_cast<double>(end);
    std::printf("trained %zu steps in %.1f s (%.0f images/s)\n", args.steps, seconds,
                static_cast<double>(args.steps * args.batch) / seconds);
    std::printf("held-out loss after training: %.5f\n", static_cast<double>(end));

    write_csv(args.out + "/loss.csv", losses);
    write_svg(args.out + "/loss.svg", losses);
    write_grid(args.out + "/reconstructions.pgm", held_out, reconstruction, 8, 4);
    std::printf("wrote %s/loss.csv, %s/loss.svg and %s/reconstructions.pgm (inputs above reconstructions)\n",
                args.out.c_str(), args.out.c_str(), args.out.c_str());

    if (!(drop >= args.min_drop))
    {
        std::printf("FAIL: the held-out loss fell only %.2fx (from %.5f to %.5f), expected at least %.1fx\n", drop,
                    static_cast<double>(start), static_cast<double>(end), args.min_drop);
        return 1;
    }
    std::printf("the held-out loss fell %.1fx (from %.5f to %.5f; required: %.1fx)\n", drop,
                static_cast<double>(start), static_cast<double>(end), args.min_drop);
    return 0;
}
