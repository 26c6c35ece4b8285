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
#[optarch(yaml = "name: lm\nparams:\n  c: { init: -0.05, learn: true, per: step }\nstate: [z]\ninit:\n  z[-1]: z[0]\nstep:\n  z[k+1]: (1 - c) * z[k] + c * z[k-1] - grad(z[k])\noutput: z\n", steps = 3, set(c = 0.25), crate = "::optarch_core")]
struct Net {
    blocks: [Block; 3],
    coef: Tensor,
    calls: usize,
}

fn main() {
    let vs = nn::VarStore::new(optarch_core::__private::tch::Device::Cpu);
    let net = Net::new(&vs.root(), |p, _step| Block(nn::linear(p, 2, 2, Default::default())));
    let y = nn::ModuleT::forward_t(&net, &Tensor::ones([1, 2], optarch_core::__private::tch::kind::FLOAT_CPU), false);
    assert_eq!(y.size(), [1, 2]);
    assert_eq!(net.calls, 0);
    assert_eq!(Net::LEARNABLES, 2); // c_0 cancels: z[-1] = z[0]
    assert_eq!(Net::topology().unwrap().learnables[0].init, 0.25);
    assert_eq!(Net::SPEC_HASH, optarch_core::codegen::spec_hash(Net::SPEC_YAML));
    assert_eq!(Net::plan().unwrap().blocks, 3);
}
