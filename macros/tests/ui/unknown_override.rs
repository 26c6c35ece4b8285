use optarch_core::__private::tch::{nn, Tensor};

#[derive(Debug)]
struct Block(nn::Linear);

impl nn::ModuleT for Block {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.apply(&self.0)
    }
}

#[derive(Debug, optarch_macros::Unroll)]
#[optarch(yaml = "name: hb\nparams:\n  beta: 0.5\nstate: [z]\ninit:\n  z[-1]: z[0]\nstep:\n  z[k+1]: z[k] - grad(z[k]) + beta * (z[k] - z[k-1])\noutput: z\n", steps = 3, set(bta = 0.9))]
struct Net {
    blocks: Vec<Block>,
}

fn main() {}
