from aeon.datasets import load_basic_motions
from sklearn.pipeline import make_pipeline

from skrnn import SequenceClassifier
from skrnn.preprocessing import SequenceScaler

# aeon's panels are (n_cases, n_channels, n_timepoints); skrnn reads
# (n_sequences, n_timesteps, n_features): one transpose
X_train, y_train = load_basic_motions(split="train")
X_test, y_test = load_basic_motions(split="test")
model = make_pipeline(SequenceScaler(), SequenceClassifier(random_state=0))
model.fit(X_train.transpose(0, 2, 1), y_train)
accuracy = model.score(X_test.transpose(0, 2, 1), y_test)
print(f"BasicMotions test accuracy: {accuracy:.3f}")
