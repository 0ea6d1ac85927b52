"""Keras layers of tfladder (all registered under the "tfladder" package)."""
from tfladder.layers.blocks import (ACTIVATIONS, MLP, ConvStack, Flatten, ImageDecoder,
                                    ImageEncoder, ImageHead, LikelihoodHead,
                                    get_activation)
from tfladder.layers.ladder import GenerativeRung, InferenceRung
from tfladder.layers.observations import (OBSERVATIONS, BernoulliObservation, BinaryBernoulli,
                                          DiscretizedLogisticMixture,
                                          DiscretizedLogisticMixtureObservation,
                                          DiscretizedLogisticObservation,
                                          GaussianObservation, Observation, get_observation)
from tfladder.layers.stochastic import DeltaGaussian, GaussianStochastic, PrecisionWeightedMerge
