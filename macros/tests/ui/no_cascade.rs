use optarch_core::__private::tch::{nn, Tensor};
use optarch_core::Unrolled;

#[derive(Debug)]
struct Block(nn::Linear);

impl nn::ModuleT for Block {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.apply(&self.0)
    }
}

#[derive(Debug, optarch_macros::Unroll)]
#[optarch(yaml = "name: gd\nstate: [z]\nstep:\n  z[k+1]: z[k] - grad(z[k])\noutput: z\n", steps = 3, set(beta = 1.0))]
struct Net {
    blocks: Vec<Block>,
}

fn main() {
    let vs = nn::VarStore::new(optarch_core::__private::tch::Device::Cpu);
    let net = Net::new(&vs.root(), |p, _step| Block(nn::linear(p, 2, 2, Default::default())));
    let _ = nn::ModuleT::forward_t(&net, &Tensor::zeros([1, 2], optarch_core::__private::tch::kind::FLOAT_CPU), false);
    let _ = Net::topology();
}
