use optarch_core::__private::tch::{nn, Tensor};

#[derive(Debug)]
struct Block(nn::Linear);

impl nn::ModuleT for Block {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.apply(&self.0)
    }
}

#[derive(Debug, optarch_macros::Unroll)]
#[optarch(yaml = "name: lm\nparams:\n  c: { init: -0.05, learn: true, per: step }\nstate: [z]\ninit:\n  z[-1]: z[0]\nstep:\n  z[k+1]: (1 - c) * z[k] + c * z[k-1] - grad(z[k])\noutput: z\n", steps = 2)]
struct Net {
    blocks: Vec<Block>,
}

fn main() {}
